package peer_test

import (
	"testing"

	"framesync"
	"framesync/relay"
	"framesync/relay/relaytest"
	"framesync/relay/wire"
)

// BenchmarkStepPositionsOnly: 1,000 frames of 1,000 atoms where only
// positions change; a second client steps through them. Reports the bytes
// fetched per frame against the size of a whole frame: the blob cache
// makes a step cost about one positions field.
func BenchmarkStepPositionsOnly(b *testing.B) {
	const frames, atoms = 1000, 1000
	h := relaytest.Start(b, relay.Options{})
	a := join(b, connect(b, h, "a", "", false), "default")
	var batch []*framesync.Frame
	var res *wire.CommitResult
	for i := range frames {
		batch = append(batch, relaytest.Frame(atoms, float64(i)))
		if len(batch) == 100 {
			res = must[*wire.CommitResult](b)(a.Append(ctxT(b), batch...))
			batch = nil
		}
	}
	full := must[[]byte](b)(relaytest.Frame(atoms, 0).Encode())
	pos := must[[]byte](b)(framesync.EncodeValue(relaytest.Frame(atoms, 0).Positions))
	for b.Loop() {
		c := connect(b, h, "b", "", false)
		r := join(b, c, "default")
		if err := r.WaitGeneration(ctxT(b), res.Generation); err != nil {
			b.Fatal(err)
		}
		for i := range frames {
			must[*framesync.Frame](b)(r.Frame(ctxT(b), i))
		}
		perFrame := float64(c.Stats().BytesFetched) / frames
		b.ReportMetric(perFrame, "fetched-B/frame")
		b.ReportMetric(float64(len(full)), "frame-B")
		b.ReportMetric(float64(len(pos)), "positions-B")
		b.ReportMetric(perFrame/float64(len(full)), "ratio")
		c.Close()
	}
}
