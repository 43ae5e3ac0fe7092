package blobstore

import (
	"context"
	"os"

	"golang.org/x/sys/unix"

	"framesync"
)

// syncBlobs makes blobs hs durable with one syncfs of the store's
// filesystem: it writes back every dirty file and directory entry there,
// which costs one journal commit however many blobs were put.
func (d *Dir) syncBlobs(ctx context.Context, hs []framesync.Hash) error {
	f, err := os.Open(d.root)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return d.syncEach(ctx, hs)
	}
	return nil
}
