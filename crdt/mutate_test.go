package crdt

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"framesync"
)

// TestReceiveMutatedChanges mutates the operation columns (and sometimes the
// headers) of real changes, repairs their checksums as an attacker would and
// sends them through Session.Receive. Each message must be refused or
// applied; the Automerge core must never abort the process. Without the
// operation check this aborts within a few hundred messages (see
// TestCoreAbortRegressions). CRDT_MUTATE_SEED and CRDT_MUTATE_N override the
// random seed and the number of messages.
func TestReceiveMutatedChanges(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CRDT_MUTATE_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	n := 1000
	if testing.Short() {
		n = 100
	}
	if s := os.Getenv("CRDT_MUTATE_N"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	// Printed before starting: if the core aborts, the test log is lost.
	fmt.Fprintf(os.Stderr, "TestReceiveMutatedChanges: CRDT_MUTATE_SEED=%d CRDT_MUTATE_N=%d\n", seed, n)
	r := rand.New(rand.NewPCG(seed, seed))
	// Two receivers: a state document getting members' edits, and an empty
	// document getting a whole trajectory document (first sync).
	type scenario struct {
		base []byte
		msgs [][]byte // messages that carry changes
	}
	var scenarios []scenario
	base, msgs := receiveBase(t)
	trBase, trMsgs := trajectoryFirstSync(t)
	for _, sc := range []scenario{{base, msgs}, {trBase, trMsgs}} {
		var withChanges [][]byte
		for _, m := range sc.msgs {
			if p, err := parseMessage(m); err == nil && len(p.raws) > 0 {
				withChanges = append(withChanges, m)
			}
		}
		scenarios = append(scenarios, scenario{sc.base, withChanges})
	}
	refused, applied := 0, 0
	for range n {
		sc := scenarios[r.IntN(len(scenarios))]
		m := append([]byte(nil), sc.msgs[r.IntN(len(sc.msgs))]...)
		p, _ := parseMessage(m)
		k := r.IntN(len(p.raws))
		raw := p.raws[k] // aliases m
		lo := len(raw) - len(p.rests[k])
		if r.IntN(4) == 0 {
			lo = 10 // the header too: dependencies, actor, sequence number, start op
		}
		for range 1 + r.IntN(4) {
			i := lo + r.IntN(len(raw)-lo)
			switch r.IntN(3) {
			case 0:
				raw[i] = byte(r.IntN(256))
			case 1:
				raw[i] ^= 1 << r.IntN(8)
			default:
				raw[i] = byte(r.IntN(4))
			}
		}
		d, err := LoadDoc(sc.base, nil)
		if err != nil {
			t.Fatal(err)
		}
		s := NewSession(d, nil)
		if err := s.Receive(fixChecksums(m)); err != nil {
			refused++
			if os.Getenv("CRDT_MUTATE_VERBOSE") != "" {
				t.Log(err)
			}
			continue
		}
		applied++
		s.Next()
		if st, err := OpenState(d); err == nil {
			st.Diff(nil, st.Heads())
		}
		if tr, err := OpenTrajectory(d, nil); err == nil {
			tr.Diff(nil, tr.Heads())
		}
		readJSON(d.am.Root())
		d.Save()
	}
	t.Logf("seed %d: %d messages refused, %d applied", seed, refused, applied)
}

// trajectoryFirstSync returns an empty document and the messages that sync a
// trajectory document with every kind of edit into it.
func trajectoryFirstSync(tb testing.TB) (base []byte, msgs [][]byte) {
	tb.Helper()
	clock := func() time.Time { return time.UnixMilli(1_700_000_000_000) }
	tr, err := NewTrajectory(&Options{ActorID: "dd04", Now: clock})
	if err != nil {
		tb.Fatal(err)
	}
	c, err := tr.Extend("a", []framesync.Hash{fuzzHash(1), fuzzHash(2), fuzzHash(3), fuzzHash(4)})
	if err != nil {
		tb.Fatal(err)
	}
	ids := []string{c.Entries[0].ID, c.Entries[1].ID, c.Entries[2].ID}
	for _, err := range []error{
		second(tr.Replace("b", ids[0], 1, fuzzHash(5))),
		second(tr.Revert("b", ids[0], 1)),
		second(tr.Move("c", ids[1], 3)),
		second(tr.Delete("d", ids[2])),
		second(tr.Insert("e", 1, fuzzHash(6))),
	} {
		if err != nil {
			tb.Fatal(err)
		}
	}
	empty, _ := NewDoc(&Options{ActorID: "ee05"})
	base = empty.Save()
	recv, _ := LoadDoc(base, nil)
	return base, syncMessages(tb, NewSession(tr.doc, nil), NewSession(recv, nil))
}

func second[T any](_ T, err error) error { return err }
