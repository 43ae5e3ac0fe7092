//go:build !unix

package peer

import "sync"

var replicaMu sync.Mutex

// locked runs fn holding a process-wide lock. Without flock, processes
// sharing a replica may lose each other's unsynced state edits.
func (rp *Replica) locked(fn func() error) error {
	replicaMu.Lock()
	defer replicaMu.Unlock()
	return fn()
}
