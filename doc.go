// Package framesync is the shared vocabulary of framesync: the frame model and
// its msgpack codec, content hashes (Hash), and error kinds with stable wire
// codes (Kind, Error).
//
// A Frame holds one configuration of atoms with ASE/ZnDraw field names:
// numbers, positions, cell, pbc, named per-atom arrays, and per-frame info and
// calc values. Frames encode canonically to msgpack (sorted keys, numeric
// arrays as msgpack-numpy maps), split into per-field blobs plus a manifest,
// and join back. docs/frame-format.md describes the bytes.
//
// XYZReader and XYZWriter stream frames from and to xyz and extended xyz text
// as ASE reads and writes it (Lattice, Properties, pbc, info and calculator
// results); docs/xyz.md lists the mapping.
//
// This package imports no other package of the module.
package framesync
