package crdt

import (
	"fmt"

	"framesync"
)

// errorf returns a *framesync.Error of kind k for operation op.
func errorf(k framesync.Kind, op, format string, args ...any) error {
	return &framesync.Error{Kind: k, Op: op, Msg: fmt.Sprintf(format, args...)}
}

// internal wraps an unexpected failure of the Automerge core.
func internal(op string, err error) error {
	return &framesync.Error{Kind: framesync.Internal, Op: op, Msg: "automerge", Err: err}
}
