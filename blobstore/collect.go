package blobstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"framesync"
)

// CollectStats counts what Collect did. Scanned = Kept + Young + Deleted + Gone.
type CollectStats struct {
	Scanned    int   // blobs walked
	Kept       int   // referenced: keep returned true
	Young      int   // not referenced, but modified at or after the cutoff (the grace window)
	Deleted    int   // not referenced, older than the cutoff, and deleted
	Gone       int   // not referenced and old, but deleted by someone else first
	BytesFreed int64 // total size of the Deleted blobs
}

// Collect deletes from s every blob that keep does not keep and whose
// ModTime is before olderThan, and reports what it did. keep is called once
// per blob, from one goroutine. Pass olderThan = now minus a grace window so
// that blobs uploaded (or re-put) for a commit that is not yet visible to
// keep survive.
//
// If s is a Pruner, each delete is conditional on the blob still being old,
// so a Put that refreshes a blob while Collect runs always keeps it.
// Otherwise Collect checks the ModTime again just before Delete, which
// leaves a short race with such a Put.
//
// On error, including a done ctx, Collect stops and returns the stats so far.
func Collect(ctx context.Context, s Store, keep func(framesync.Hash) bool, olderThan time.Time) (CollectStats, error) {
	var st CollectStats
	if keep == nil {
		return st, &framesync.Error{Kind: framesync.BadInput, Op: "blobstore: collect", Msg: "nil keep function"}
	}
	pruner, _ := s.(Pruner)
	err := s.Walk(ctx, func(info Info) error {
		st.Scanned++
		switch {
		case keep(info.Hash):
			st.Kept++
			return nil
		case !info.ModTime.Before(olderThan):
			st.Young++
			return nil
		}
		deleted, err := deleteIfOld(ctx, s, pruner, info.Hash, olderThan)
		switch {
		case errors.Is(err, framesync.NotFound):
			st.Gone++
		case err != nil:
			return fmt.Errorf("blobstore: collect: %w", err)
		case deleted:
			st.Deleted++
			st.BytesFreed += info.Size
		default:
			st.Young++
		}
		return nil
	})
	return st, err
}

// deleteIfOld deletes blob h if its ModTime is before olderThan, with p's
// Prune if p is not nil.
func deleteIfOld(ctx context.Context, s Store, p Pruner, h framesync.Hash, olderThan time.Time) (bool, error) {
	if p != nil {
		return p.Prune(ctx, h, olderThan)
	}
	info, err := s.Stat(ctx, h)
	if err != nil {
		return false, err
	}
	if !info.ModTime.Before(olderThan) {
		return false, nil
	}
	if err := s.Delete(ctx, h); err != nil {
		return false, err
	}
	return true, nil
}
