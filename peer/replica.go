package peer

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"framesync"
	"framesync/blobstore"
	"framesync/crdt"
	"framesync/relay/wire"
)

// Replica is the local copy of what a client knows about one hub: the
// documents of every room it joined, their sync states with the hub, and a
// cache of the blobs it fetched or uploaded. It lives in a directory and is
// readable with no network at all (see Open).
//
// Layout under the cache directory:
//
//	hubs/<host>_<port>/client.json        the client identity used with this hub
//	hubs/<host>_<port>/blobs/             blob cache (a blobstore.Dir)
//	hubs/<host>_<port>/rooms/<room>/      trajectory.am, state.am (Automerge
//	                                      snapshots), trajectory.sync, state.sync
//	                                      (sync states), room.json
//
// Every file is replaced atomically (written aside, then renamed), so a
// killed client never leaves an unreadable replica. Several processes may
// share a replica: saving a document merges what another process saved in
// the meantime, under a lock file.
type Replica struct {
	// Static after Open.
	dir   string
	hub   string // the hub URL the replica belongs to
	blobs *blobstore.Dir
	ident identity
}

// identity is client.json.
type identity struct {
	Client string `json:"client"` // the client ID sent in hello: lock holder identity
	Hub    string `json:"hub"`    // the hub URL
	HubID  string `json:"hub_id,omitempty"`
}

// DefaultCacheDir is where replicas live unless told otherwise: the
// "framesync" directory in the user's cache directory.
func DefaultCacheDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory (set --cache or FRAMESYNC_CACHE): %w", err)
	}
	return filepath.Join(d, "framesync"), nil
}

// hubKey turns a hub URL into a directory name: host and port.
func hubKey(hubURL string) (string, error) {
	u, err := url.Parse(hubURL)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", &framesync.Error{Kind: framesync.BadInput, Op: "hub URL", Msg: fmt.Sprintf("%q is not an http:// or https:// URL", hubURL)}
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	key := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '_'
	}, u.Hostname()) + "_" + port
	return key, nil
}

// ReplicaDir returns the directory of the replica of hub hubURL under cache
// ("" = DefaultCacheDir()), without opening or creating it.
func ReplicaDir(cache, hubURL string) (string, error) {
	if cache == "" {
		var err error
		if cache, err = DefaultCacheDir(); err != nil {
			return "", err
		}
	}
	key, err := hubKey(hubURL)
	if err != nil {
		return "", err
	}
	return filepath.Join(cache, "hubs", key), nil
}

// Open opens (creating if needed) the replica of hub hubURL under cache
// ("" = DefaultCacheDir()).
func Open(cache, hubURL string) (*Replica, error) {
	dir, err := ReplicaDir(cache, hubURL)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "rooms"), 0o755); err != nil {
		return nil, fmt.Errorf("replica: %w", err)
	}
	blobs, err := blobstore.OpenDir(filepath.Join(dir, "blobs"))
	if err != nil {
		return nil, fmt.Errorf("replica: %w", err)
	}
	// A cache: what a machine crash loses is fetched again (and a damaged
	// blob is detected on read).
	blobs.SetSync(false)
	rp := &Replica{dir: dir, hub: hubURL, blobs: blobs}
	err = rp.locked(func() error {
		b, err := os.ReadFile(filepath.Join(dir, "client.json"))
		if err == nil {
			if err := json.Unmarshal(b, &rp.ident); err == nil && rp.ident.Client != "" {
				return nil
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		var id [8]byte
		rand.Read(id[:])
		rp.ident = identity{Client: hex.EncodeToString(id[:]), Hub: hubURL}
		b, _ = json.MarshalIndent(rp.ident, "", "  ")
		return writeFileAtomic(filepath.Join(dir, "client.json"), b)
	})
	if err != nil {
		return nil, fmt.Errorf("replica: client identity: %w", err)
	}
	return rp, nil
}

// Dir returns the replica's directory.
func (rp *Replica) Dir() string { return rp.dir }

// ClientID returns the client ID this replica uses with its hub.
func (rp *Replica) ClientID() string { return rp.ident.Client }

// Blobs returns the blob cache.
func (rp *Replica) Blobs() *blobstore.Dir { return rp.blobs }

// Rooms lists the rooms the replica holds, sorted.
func (rp *Replica) Rooms() ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(rp.dir, "rooms"))
	if err != nil {
		return nil, fmt.Errorf("replica: %w", err)
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && wire.CheckRoomName(e.Name()) == nil {
			if _, err := os.Stat(filepath.Join(rp.dir, "rooms", e.Name(), "trajectory.am")); err == nil {
				out = append(out, e.Name())
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// RoomMeta is room.json: what the replica last knew about a room.
type RoomMeta struct {
	Name       string    `json:"name"`
	HubID      string    `json:"hub_id,omitempty"`
	Generation int64     `json:"generation"`
	Synced     time.Time `json:"synced"` // when the hub last sent something
}

// roomData is a room's documents in a replica and their sync states with
// the hub.
type roomData struct {
	// Static after openRoom.
	rp    *Replica
	name  string
	dir   string
	traj  *crdt.Trajectory
	state *crdt.State

	mu        sync.Mutex // guards the fields below; held while saving
	trajSync  []byte     // saved sync states (nil: none yet)
	stateSync []byte
	meta      RoomMeta
	// written is the file of each document as this client last read or
	// wrote it: a file that is still the same needs no merging before the
	// next save (only another process sharing the replica changes it).
	written map[string]os.FileInfo
}

// openRoom loads room name from the replica, or starts empty documents.
// actor is the Automerge actor the state document is written with ("" for
// a read-only view).
func (rp *Replica) openRoom(name, actor string) (*roomData, error) {
	if err := wire.CheckRoomName(name); err != nil {
		return nil, err
	}
	rd := &roomData{rp: rp, name: name, dir: filepath.Join(rp.dir, "rooms", name), meta: RoomMeta{Name: name}}
	opts := &crdt.Options{ActorID: actor}
	var err error
	if rd.traj, err = loadOr(filepath.Join(rd.dir, "trajectory.am"), opts, crdt.LoadTrajectory, crdt.NewTrajectory); err != nil {
		return nil, fmt.Errorf("replica: room %s: trajectory: %w", name, err)
	}
	if rd.state, err = loadOr(filepath.Join(rd.dir, "state.am"), opts, crdt.LoadState, crdt.NewState); err != nil {
		return nil, fmt.Errorf("replica: room %s: state: %w", name, err)
	}
	rd.trajSync, _ = os.ReadFile(filepath.Join(rd.dir, "trajectory.sync"))
	rd.stateSync, _ = os.ReadFile(filepath.Join(rd.dir, "state.sync"))
	if b, err := os.ReadFile(filepath.Join(rd.dir, "room.json")); err == nil {
		json.Unmarshal(b, &rd.meta)
	}
	rd.meta.Name = name
	return rd, nil
}

func loadOr[T any](path string, opts *crdt.Options, load func([]byte, *crdt.Options) (T, error), fresh func(*crdt.Options) (T, error)) (T, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fresh(opts)
	}
	if err != nil {
		var zero T
		return zero, err
	}
	return load(b, opts)
}

// Meta returns what the replica knows about the room.
func (rd *roomData) Meta() RoomMeta {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	return rd.meta
}

// save writes the room's documents and sync states. What another process
// saved since is merged in first, so concurrent clients sharing the
// replica lose nothing.
func (rd *roomData) save(trajSync, stateSync []byte) error {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	if trajSync != nil {
		rd.trajSync = trajSync
	}
	if stateSync != nil {
		rd.stateSync = stateSync
	}
	if g, err := rd.traj.Generation(); err == nil {
		rd.meta.Generation = g
	}
	return rd.rp.locked(func() error {
		if err := os.MkdirAll(rd.dir, 0o755); err != nil {
			return err
		}
		for _, d := range []struct {
			file string
			doc  *crdt.Doc
		}{{"trajectory.am", rd.traj.Doc()}, {"state.am", rd.state.Doc()}} {
			path := filepath.Join(rd.dir, d.file)
			if fi, err := os.Stat(path); err == nil && !sameFile(rd.written[d.file], fi) {
				if b, err := os.ReadFile(path); err == nil {
					if err := d.doc.LoadIncremental(b); err != nil {
						return fmt.Errorf("merge %s: %w", d.file, err)
					}
				}
			}
			if err := writeFileAtomic(path, d.doc.Save()); err != nil {
				return err
			}
			if fi, err := os.Stat(path); err == nil {
				if rd.written == nil {
					rd.written = map[string]os.FileInfo{}
				}
				rd.written[d.file] = fi
			}
		}
		for _, f := range []struct {
			file string
			b    []byte
		}{{"trajectory.sync", rd.trajSync}, {"state.sync", rd.stateSync}} {
			if f.b != nil {
				if err := writeFileAtomic(filepath.Join(rd.dir, f.file), f.b); err != nil {
					return err
				}
			}
		}
		b, _ := json.MarshalIndent(rd.meta, "", "  ")
		return writeFileAtomic(filepath.Join(rd.dir, "room.json"), b)
	})
}

// sameFile reports whether cur is still the file prev described (same
// inode, size and modification time).
func sameFile(prev, cur os.FileInfo) bool {
	return prev != nil && os.SameFile(prev, cur) && prev.Size() == cur.Size() && prev.ModTime().Equal(cur.ModTime())
}

// writeFileAtomic replaces path with b: a reader sees the old or the new
// content, never a mix. The data is fsynced before the rename.
func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	return nil
}
