package framesync_test

import (
	"fmt"

	"framesync"
)

func Example() {
	// A water molecule with a cell, periodic in x and y, and an energy.
	f := framesync.NewFrame([]int64{8, 1, 1}, []float64{0, 0, 0.119, 0, 0.763, -0.477, 0, -0.763, -0.477})
	f.SetCell([9]float64{10, 0, 0, 0, 10, 0, 0, 0, 10})
	f.SetPBC(true, true, false)
	f.Info = map[string]any{"energy": -14.25}
	if err := f.Validate(); err != nil {
		panic(err)
	}

	// Canonical msgpack bytes, readable by Python's msgpack + msgpack_numpy.
	b, _ := f.Encode()
	back, _ := framesync.DecodeFrame(b)
	fmt.Println(back.Fields())

	// Per-field blobs plus a manifest; the manifest hash is the frame hash.
	m, blobs, _ := f.Split()
	fmt.Println(len(m), "fields in", len(blobs), "blobs")

	// Moving the atoms changes one field only.
	g, _ := framesync.DecodeFrame(b)
	g.Positions = framesync.Float64Array(make([]float64, 9), 3, 3)
	m2, _, _ := g.Split()
	fmt.Println("changed:", m2.Changed(m))
	// Output:
	// [cell info.energy numbers pbc positions]
	// 5 fields in 5 blobs
	// changed: [positions]
}
