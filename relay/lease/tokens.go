package lease

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"framesync"
)

// TokenStore persists the fencing token high-water mark of each room, so
// that a restarted backend never grants a token it granted before.
type TokenStore interface {
	// Load returns the reserved high-water mark of room (0 if none): every
	// token granted so far is at most this.
	Load(room string) (int64, error)
	// Reserve durably raises the mark of room to upTo before tokens up to
	// it are granted.
	Reserve(room string, upTo int64) error
}

// SharedStore is an optional ability of a TokenStore, found by type
// assertion: Shared reports whether every hub reserves its tokens in this
// one store before granting them, so a hub need not reserve the tokens it
// sees other hubs grant.
type SharedStore interface {
	Shared() bool
}

// FileTokens is a TokenStore keeping one small file per room in a
// directory, each replaced atomically (temporary file, fsync, rename,
// directory fsync). Files of deleted rooms are kept, so a re-created room
// never reuses a token.
type FileTokens struct {
	dir string
	mu  sync.Mutex // serialises writes
}

var _ TokenStore = (*FileTokens)(nil)

// OpenFileTokens opens (creating) the token directory dir.
func OpenFileTokens(dir string) (*FileTokens, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return &FileTokens{dir: dir}, nil
}

func (f *FileTokens) path(room string) (string, error) {
	if room == "" || strings.ContainsAny(room, `/\`) || strings.Contains(room, "..") || room[0] == '.' {
		return "", &framesync.Error{Kind: framesync.BadInput, Op: "fencing tokens", Field: "room", Msg: fmt.Sprintf("%q cannot name a token file", room)}
	}
	return filepath.Join(f.dir, room+".token"), nil
}

// Load implements TokenStore.
func (f *FileTokens) Load(room string) (int64, error) {
	p, err := f.path(room)
	if err != nil {
		return 0, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n < 0 {
		return 0, &framesync.Error{Kind: framesync.Corrupt, Op: "fencing tokens", Msg: fmt.Sprintf("%s does not hold a token high-water mark (%q); refusing to reuse tokens: restore it or write a number above every token ever granted", p, truncate(string(b), 40))}
	}
	return n, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// Reserve implements TokenStore.
func (f *FileTokens) Reserve(room string, upTo int64) error {
	p, err := f.path(room)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	tmp, err := os.CreateTemp(f.dir, ".tmp-token-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(strconv.FormatInt(upTo, 10) + "\n"); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return err
	}
	d, err := os.Open(f.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
