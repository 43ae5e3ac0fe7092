package testproc

import (
	"bytes"
	"fmt"
	"os/exec"
	"sync"
)

// Proc is a server process a test started.
type Proc struct {
	Cmd  *exec.Cmd
	Out  *TailBuffer   // the last bytes of its stdout and stderr
	Done chan struct{} // closed when it has exited and been reaped
	Err  error         // its exit status; set before Done is closed
}

// Start starts cmd with its output kept in a TailBuffer of keep bytes,
// makes it die with the test process, and reaps it when it exits.
func Start(cmd *exec.Cmd, keep int) (*Proc, error) {
	p := &Proc{Cmd: cmd, Out: &TailBuffer{Max: keep}, Done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.Out, p.Out
	DieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	go func() {
		p.Err = cmd.Wait()
		close(p.Done)
	}()
	return p, nil
}

// Kill kills the process (SIGKILL) and waits until it is reaped.
func (p *Proc) Kill() {
	_ = p.Cmd.Process.Kill()
	<-p.Done
}

// OnFreePort calls start with a free port of 127.0.0.1 until it succeeds,
// at most tries times (another process may take a port between choosing
// it and the server binding it), and returns the last error.
func OnFreePort(tries int, start func(port int) error) error {
	var err error
	for range tries {
		var port int
		if port, err = FreePort(); err != nil {
			return err
		}
		if err = start(port); err == nil {
			return nil
		}
	}
	return err
}

// TailBuffer keeps the last Max bytes written to it (all if Max is 0). It
// is safe for concurrent use.
type TailBuffer struct {
	Max int

	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (b *TailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if extra := b.buf.Len() - b.Max; b.Max > 0 && extra > 0 {
		b.buf.Next(extra)
	}
	return len(p), nil
}

// String returns the bytes kept.
func (b *TailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
