package relay

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// A docFile persists one Automerge document as a snapshot plus a log of
// incremental changes:
//
//	<name>.am      the last full snapshot (Doc.Save), replaced atomically
//	<name>.log     records appended since: 4-byte big-endian length,
//	               32-byte SHA-256 of the payload, payload (Doc.SaveIncremental)
//
// Appending a record and fsyncing it is what makes a commit durable. On
// load the snapshot is read and every intact record applied; a torn record
// at the end (a crash while appending) is cut off, never an error. When the
// log grows past the snapshot the document is compacted: a new snapshot is
// written atomically, then the log is truncated. A crash between the two
// replays records the snapshot already holds, which Automerge ignores.
//
// A docFile is not safe for concurrent use; its room serialises access.
type docFile struct {
	snap, log string
	logSize   int64
	snapSize  int64
	noSync    bool
}

const logHeader = 4 + sha256.Size

func openDocFile(dir, name string) *docFile {
	return &docFile{snap: filepath.Join(dir, name+".am"), log: filepath.Join(dir, name+".log")}
}

// load returns the snapshot and the intact log records, in order. ok is
// false when no snapshot exists yet.
func (f *docFile) load() (snap []byte, records [][]byte, ok bool, err error) {
	snap, err = os.ReadFile(f.snap)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, false, nil
	}
	if err != nil {
		return nil, nil, false, err
	}
	f.snapSize = int64(len(snap))
	b, err := os.ReadFile(f.log)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, false, err
	}
	var good int
	for rest := b; len(rest) >= logHeader; {
		n := binary.BigEndian.Uint32(rest)
		if uint64(n) > uint64(len(rest)-logHeader) {
			break
		}
		payload := rest[logHeader : logHeader+int(n)]
		if sum := sha256.Sum256(payload); !bytes.Equal(sum[:], rest[4:logHeader]) {
			break
		}
		records = append(records, payload)
		good += logHeader + int(n)
		rest = rest[logHeader+int(n):]
	}
	if good != len(b) {
		// A torn tail: drop it so the next append starts on a record boundary.
		if err := os.Truncate(f.log, int64(good)); err != nil {
			return nil, nil, false, fmt.Errorf("truncate torn log %s: %w", f.log, err)
		}
	}
	f.logSize = int64(good)
	return snap, records, true, nil
}

// append adds one record to the log and syncs it.
func (f *docFile) append(payload []byte) error {
	if len(payload) == 0 {
		return nil
	}
	rec := make([]byte, logHeader+len(payload))
	binary.BigEndian.PutUint32(rec, uint32(len(payload)))
	sum := sha256.Sum256(payload)
	copy(rec[4:], sum[:])
	copy(rec[logHeader:], payload)
	fh, err := os.OpenFile(f.log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	_, err = fh.Write(rec)
	if err == nil && !f.noSync {
		err = fh.Sync()
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("append %s: %w", f.log, err)
	}
	f.logSize += int64(len(rec))
	return nil
}

// needsCompaction reports whether the log has outgrown the snapshot.
func (f *docFile) needsCompaction() bool {
	return f.logSize > 64<<10 && f.logSize > f.snapSize
}

// writeSnapshot replaces the snapshot with snap and empties the log.
func (f *docFile) writeSnapshot(snap []byte) error {
	if err := writeFileAtomic(f.snap, snap, f.noSync); err != nil {
		return err
	}
	f.snapSize = int64(len(snap))
	if err := os.Truncate(f.log, 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	f.logSize = 0
	return nil
}

// writeFileAtomic writes b to a temporary file next to name, syncs it and
// renames it over name, then syncs the directory.
func writeFileAtomic(name string, b []byte, noSync bool) error {
	dir := filepath.Dir(name)
	tmp, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(name)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if !noSync {
		if err := tmp.Sync(); err != nil {
			tmp.Close()
			return err
		}
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return err
	}
	if noSync {
		return nil
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}
