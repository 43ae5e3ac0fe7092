package framesync

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestHash(t *testing.T) {
	h := Sum([]byte("hello"))
	s := h.String()
	if s != "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824" {
		t.Fatalf("Sum(hello) = %s", s)
	}
	p, err := ParseHash(s)
	if err != nil || p != h {
		t.Fatalf("ParseHash(%s) = %v, %v", s, p, err)
	}
	hex := strings.TrimPrefix(s, HashPrefix)
	bad := []string{
		"", hex, "sha256:" + hex[:63], "sha256:" + hex + "0", "SHA256:" + hex,
		"sha256:" + strings.ToUpper(hex), " " + s, s + " ", "sha1:" + hex,
		"sha256:" + hex[:62] + "zz", "sha256:" + strings.Repeat("g", 64),
	}
	for _, b := range bad {
		if _, err := ParseHash(b); !errors.Is(err, BadInput) {
			t.Errorf("ParseHash(%q) = %v, want BadInput", b, err)
		}
	}
	// Text and JSON forms.
	js, err := json.Marshal(map[string]Hash{"h": h})
	if err != nil || string(js) != `{"h":"`+s+`"}` {
		t.Fatalf("json = %s, %v", js, err)
	}
	var back map[string]Hash
	if err := json.Unmarshal(js, &back); err != nil || back["h"] != h {
		t.Fatalf("json round trip: %v", err)
	}
	if err := json.Unmarshal([]byte(`{"h":"sha256:00"}`), &back); err == nil {
		t.Fatal("bad hash in JSON accepted")
	}
	hasher := NewHasher()
	hasher.Write([]byte("hel"))
	hasher.Write([]byte("lo"))
	if HashOf(hasher) != h {
		t.Fatal("HashOf(streamed) differs from Sum")
	}
	if !(Hash{}).IsZero() || h.IsZero() {
		t.Fatal("IsZero")
	}
}

func TestErrorKinds(t *testing.T) {
	seen := map[string]bool{}
	for k := Internal; k <= RateLimited; k++ {
		code := k.Code()
		if seen[code] {
			t.Fatalf("code %q used twice", code)
		}
		seen[code] = true
		back, ok := KindFromCode(code)
		if !ok || back != k {
			t.Fatalf("KindFromCode(%q) = %v, %v; want %v", code, back, ok, k)
		}
		if s := k.HTTPStatus(); s < 400 || s > 599 {
			t.Fatalf("%s: HTTP status %d", code, s)
		}
	}
	// The wire codes are a contract: these must never change.
	stable := map[Kind]string{NotFound: "not_found", Conflict: "conflict", Locked: "locked", BadInput: "bad_input",
		TooLarge: "too_large", Unauthorized: "unauthorized", Forbidden: "forbidden", Internal: "internal"}
	for k, code := range stable {
		if k.Code() != code {
			t.Errorf("%d: code %q, want %q", k, k.Code(), code)
		}
	}
	if k, ok := KindFromCode("no_such_code"); ok || k != Internal {
		t.Fatal("unknown code not reported")
	}
	if Locked.HTTPStatus() != 423 || Conflict.HTTPStatus() != 409 || TooLarge.HTTPStatus() != 413 {
		t.Fatal("status codes of DESIGN §4 changed")
	}
	// Kinds survive wrapping, both as a bare Kind and as *Error.
	err := &Error{Kind: Conflict, Op: "commit", Field: "frame:ab", Msg: "base version 3, current 4"}
	wrapped := errors.Join(errors.New("context"), err)
	if !errors.Is(wrapped, Conflict) || KindOf(wrapped) != Conflict {
		t.Fatal("kind lost when wrapping *Error")
	}
	if KindOf(errors.New("plain")) != Internal {
		t.Fatal("plain errors are not Internal")
	}
	if !errors.Is(wrapErr(NotFound), NotFound) || KindOf(wrapErr(NotFound)) != NotFound {
		t.Fatal("kind lost when wrapping a Kind")
	}
	if got := err.Error(); got != "commit: frame:ab: base version 3, current 4" {
		t.Fatalf("Error() = %q", got)
	}
	if got := (&Error{Kind: NotFound}).Error(); got != "not found" {
		t.Fatalf("Error() = %q", got)
	}
}

func wrapErr(err error) error { return errors.Join(errors.New("ctx"), err) }
