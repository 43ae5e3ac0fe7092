//go:build !linux

package blobstore

import (
	"context"

	"framesync"
)

func (d *Dir) syncBlobs(ctx context.Context, hs []framesync.Hash) error {
	return d.syncEach(ctx, hs)
}
