package blobstore_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"strings"

	"framesync"
	"framesync/blobstore"
)

func Example() {
	root, err := os.MkdirTemp("", "blobs")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(root)
	ctx := context.Background()

	s, err := blobstore.OpenDir(root)
	if err != nil {
		log.Fatal(err)
	}
	info, err := s.Put(ctx, strings.NewReader("positions"), framesync.Hash{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(info.Hash, info.Size)

	b, err := blobstore.ReadAll(ctx, s, info.Hash)
	fmt.Printf("%s %v\n", b, err)

	// An upload that does not match the hash it claims stores nothing.
	_, err = s.Put(ctx, strings.NewReader("tampered"), info.Hash)
	fmt.Println(errors.Is(err, blobstore.ErrHashMismatch), framesync.KindOf(err).HTTPStatus())

	_, err = s.Stat(ctx, framesync.Sum([]byte("never stored")))
	fmt.Println(errors.Is(err, blobstore.ErrNotFound), framesync.KindOf(err).HTTPStatus())
	// Output:
	// sha256:f50871d14c198e22c629a383ccd1e1cf0dfe355d4bece706a0407abbd3de7973 9
	// positions <nil>
	// true 400
	// true 404
}
