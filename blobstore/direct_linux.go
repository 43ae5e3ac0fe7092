package blobstore

import (
	"os"
	"syscall"
)

// directIO reports whether Dir writes blobs with O_DIRECT on this platform.
// Direct writes skip the copy into the page cache, which on small virtual
// machines costs more than hashing (see the benchmarks in bench_test.go).
const directIO = true

// oDirect is the open flag for direct I/O.
const oDirect = syscall.O_DIRECT

// setDirect turns O_DIRECT on or off for the open file f.
func setDirect(f *os.File, on bool) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_GETFL, 0)
		if errno != 0 {
			serr = os.NewSyscallError("fcntl", errno)
			return
		}
		if on {
			flags |= syscall.O_DIRECT
		} else {
			flags &^= syscall.O_DIRECT
		}
		if _, _, errno := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_SETFL, flags); errno != 0 {
			serr = os.NewSyscallError("fcntl", errno)
		}
	})
	if err != nil {
		return err
	}
	return serr
}
