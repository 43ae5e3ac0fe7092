package blobstore_test

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"framesync"
	"framesync/blobstore"
)

func TestSentinelKinds(t *testing.T) {
	for _, c := range []struct {
		err    error
		kind   framesync.Kind
		status int
	}{
		{blobstore.ErrNotFound, framesync.NotFound, http.StatusNotFound},
		{blobstore.ErrHashMismatch, framesync.BadInput, http.StatusBadRequest},
		{blobstore.ErrCorrupt, framesync.Corrupt, http.StatusInternalServerError},
	} {
		wrapped := fmt.Errorf("serving blob: %w", c.err)
		if !errors.Is(wrapped, c.err) || !errors.Is(wrapped, c.kind) {
			t.Errorf("%v: errors.Is fails for the sentinel or its kind", c.err)
		}
		if k := framesync.KindOf(wrapped); k != c.kind || k.HTTPStatus() != c.status {
			t.Errorf("%v: KindOf = %s (HTTP %d), want %s (HTTP %d)", c.err, k.Code(), k.HTTPStatus(), c.kind.Code(), c.status)
		}
	}
}
