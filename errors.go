package framesync

import (
	"errors"
	"net/http"
	"strings"
)

// Kind classifies an error for decisions and for the wire. A Kind is itself an
// error, so code can wrap it directly (fmt.Errorf("open room: %w", NotFound))
// and test for it with errors.Is(err, framesync.NotFound).
//
// Each Kind has a stable wire code (Code) and an HTTP status (HTTPStatus).
// Wire codes are never renamed or reused; new kinds are only ever appended.
type Kind uint8

// The error kinds. Append new kinds at the end; never reorder.
const (
	Internal             Kind = iota // "internal": a bug or an unexpected failure; 500
	NotFound                         // "not_found": no such room, frame, blob or version; 404
	Conflict                         // "conflict": the base version is not the current one; 409
	Locked                           // "locked": someone else holds the lock; 423
	BadInput                         // "bad_input": malformed or invalid request data; 400
	TooLarge                         // "too_large": a size limit was exceeded; 413
	Unauthorized                     // "unauthorized": no or invalid credentials; 401
	Forbidden                        // "forbidden": credentials valid, permission missing; 403
	PreconditionFailed               // "precondition_failed": a precondition (ETag, token) does not hold; 412
	PreconditionRequired             // "precondition_required": a required precondition is missing; 428
	Unavailable                      // "unavailable": a dependency is down; retry later; 503
	Corrupt                          // "corrupt": stored data does not match its hash; 500
	RateLimited                      // "rate_limited": too many requests; 429
)

var kindInfo = [...]struct {
	code   string
	status int
}{
	Internal:             {"internal", http.StatusInternalServerError},
	NotFound:             {"not_found", http.StatusNotFound},
	Conflict:             {"conflict", http.StatusConflict},
	Locked:               {"locked", http.StatusLocked},
	BadInput:             {"bad_input", http.StatusBadRequest},
	TooLarge:             {"too_large", http.StatusRequestEntityTooLarge},
	Unauthorized:         {"unauthorized", http.StatusUnauthorized},
	Forbidden:            {"forbidden", http.StatusForbidden},
	PreconditionFailed:   {"precondition_failed", http.StatusPreconditionFailed},
	PreconditionRequired: {"precondition_required", http.StatusPreconditionRequired},
	Unavailable:          {"unavailable", http.StatusServiceUnavailable},
	Corrupt:              {"corrupt", http.StatusInternalServerError},
	RateLimited:          {"rate_limited", http.StatusTooManyRequests},
}

// Code returns the stable wire code of k, such as "not_found".
func (k Kind) Code() string {
	if int(k) < len(kindInfo) {
		return kindInfo[k].code
	}
	return kindInfo[Internal].code
}

// HTTPStatus returns the HTTP status code that carries k.
func (k Kind) HTTPStatus() int {
	if int(k) < len(kindInfo) {
		return kindInfo[k].status
	}
	return http.StatusInternalServerError
}

// Error implements error; the message is the wire code with spaces, e.g. "not found".
func (k Kind) Error() string { return strings.ReplaceAll(k.Code(), "_", " ") }

// KindFromCode maps a wire code back to its Kind. Unknown codes (from a newer
// peer, say) map to Internal and ok is false.
func KindFromCode(code string) (k Kind, ok bool) {
	for i, info := range kindInfo {
		if info.code == code {
			return Kind(i), true
		}
	}
	return Internal, false
}

// KindOf returns the Kind of err: the Kind of the first *Error or Kind in its
// chain, Internal for any other non-nil error. KindOf(nil) is Internal too;
// callers check err != nil first.
func KindOf(err error) Kind {
	var e *Error
	var k Kind
	switch {
	case errors.As(err, &e):
		return e.Kind
	case errors.As(err, &k):
		return k
	}
	return Internal
}

// Error is an error with a Kind and context: the operation, the field or
// object it concerns, a human message and an optional cause.
//
// Its text reads "op: field: msg: cause", leaving out empty parts.
type Error struct {
	Kind  Kind   // what kind of failure, for decisions and the wire
	Op    string // the operation, e.g. "decode frame"
	Field string // the field or object concerned, e.g. "arrays.forces"
	Msg   string // what went wrong, for a human
	Err   error  // the underlying cause, if any
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	add := func(s string) {
		if s == "" {
			return
		}
		if b.Len() > 0 {
			b.WriteString(": ")
		}
		b.WriteString(s)
	}
	add(e.Op)
	add(e.Field)
	add(e.Msg)
	if e.Err != nil {
		add(e.Err.Error())
	}
	if e.Msg == "" && e.Err == nil {
		add(e.Kind.Error())
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is e's Kind, so errors.Is(err, NotFound) works
// for an *Error of kind NotFound.
func (e *Error) Is(target error) bool {
	k, ok := target.(Kind)
	return ok && k == e.Kind
}
