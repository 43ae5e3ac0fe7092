//go:build !linux

package blobstore

import "os"

// directIO reports whether Dir writes blobs with O_DIRECT on this platform.
const directIO = false

// oDirect is the open flag for direct I/O: none here.
const oDirect = 0

// setDirect does nothing: this platform has no O_DIRECT.
func setDirect(f *os.File, on bool) error { return nil }
