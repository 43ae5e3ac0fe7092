// Package crdttest holds test helpers for code that uses package crdt:
// syncing two sessions in memory until they are quiet, and sample hashes.
package crdttest

import (
	"crypto/sha256"
	"fmt"
	"testing"

	"framesync"
	"framesync/crdt"
)

// maxRounds bounds Sync; Automerge converges in a few rounds.
const maxRounds = 100

// Stats counts the messages and bytes one Sync exchanged.
type Stats struct {
	Messages int // messages sent in both directions
	Bytes    int // bytes of those messages
	AtoB     int // bytes sent from a to b
	BtoA     int // bytes sent from b to a
}

// Sync exchanges messages between two sessions (each bound to its own
// document) until neither has anything to send. It fails the test on a
// Receive error or if the sessions do not settle within 100 rounds.
func Sync(tb testing.TB, a, b *crdt.Session) Stats {
	tb.Helper()
	st, err := TrySync(a, b)
	if err != nil {
		tb.Fatal(err)
	}
	return st
}

// TrySync is Sync returning the first Receive error instead of failing.
func TrySync(a, b *crdt.Session) (Stats, error) {
	var st Stats
	for round := 0; round < maxRounds; round++ {
		m1, ok1 := a.Next()
		if ok1 {
			st.Messages++
			st.Bytes += len(m1)
			st.AtoB += len(m1)
			if err := b.Receive(m1); err != nil {
				return st, fmt.Errorf("round %d: b receives: %w", round, err)
			}
		}
		m2, ok2 := b.Next()
		if ok2 {
			st.Messages++
			st.Bytes += len(m2)
			st.BtoA += len(m2)
			if err := a.Receive(m2); err != nil {
				return st, fmt.Errorf("round %d: a receives: %w", round, err)
			}
		}
		if !ok1 && !ok2 {
			return st, nil
		}
	}
	return st, fmt.Errorf("sessions still talking after %d rounds", maxRounds)
}

// Hash returns a distinct, reproducible manifest hash for n.
func Hash(n int) framesync.Hash {
	return framesync.Hash(sha256.Sum256([]byte(fmt.Sprintf("frame manifest %d", n))))
}

// Hashes returns Hash(start), ..., Hash(start+n-1).
func Hashes(start, n int) []framesync.Hash {
	out := make([]framesync.Hash, n)
	for i := range out {
		out[i] = Hash(start + i)
	}
	return out
}
