//go:build unix

package peer

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// locked runs fn holding the replica's lock file, which serializes writers
// among processes sharing the replica.
func (rp *Replica) locked(fn func() error) error {
	f, err := os.OpenFile(filepath.Join(rp.dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("replica lock: %w", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("replica lock: %w", err)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return fn()
}
