// Package testproc helps tests that run real server processes
// (redis-server, versitygw, framesync hubs): a free port to give them, and
// tying their life to the test process's.
package testproc

import "net"

// FreePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
