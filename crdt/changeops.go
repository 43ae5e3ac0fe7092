package crdt

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math"
)

// The bundled Automerge core (0.5.0) trusts some properties of the changes
// it applies and aborts the whole process (a Rust panic across the C
// boundary) when they do not hold: an operation naming an actor index
// outside the change's actor table, or a map key used on a list (or a list
// position on a map). A checksum does not protect against this: anyone can
// compute one. So before a received change reaches the core, Session.Receive
// decodes its operations here and checks them against the objects the
// document (and the message) already has.
//
// Change body after the message field (binary format spec, "Change chunks"):
//
//	other actors  uLEB128 count, then uLEB128 length + bytes each
//	columns       uLEB128 count, then (uLEB128 spec, uLEB128 length) each
//	column data   the columns' bytes, in order
//	extra bytes   ignored
//
// A column spec is id<<4 | deflate<<3 | type. The operation columns are
// (id, type): object (0, actor) and (0, integer); key (1, actor),
// (1, delta integer) and (1, string); insert (3, boolean); action
// (4, integer); value (5, metadata) and (5, raw); predecessors (7, group),
// (7, actor) and (7, delta integer); expand (9, boolean) and mark name
// (10, string). Unknown columns are skipped.
const (
	colTypeGroup   = 0
	colTypeActor   = 1
	colTypeInt     = 2
	colTypeDelta   = 3
	colTypeBool    = 4
	colTypeString  = 5
	colTypeValMeta = 6
	colTypeValRaw  = 7
)

const (
	colObjActor  = 0<<4 | colTypeActor
	colObjCtr    = 0<<4 | colTypeInt
	colKeyActor  = 1<<4 | colTypeActor
	colKeyCtr    = 1<<4 | colTypeDelta
	colKeyStr    = 1<<4 | colTypeString
	colInsert    = 3<<4 | colTypeBool
	colAction    = 4<<4 | colTypeInt
	colPredGroup = 7<<4 | colTypeGroup
	colPredActor = 7<<4 | colTypeActor
	colPredCtr   = 7<<4 | colTypeDelta
)

// Operation actions that create objects, and the kind of object they make.
const (
	actionMakeMap   = 0
	actionMakeList  = 2
	actionMakeText  = 4
	actionMakeTable = 6
)

// maxOpsPerMessage bounds the operations checked (and so applied) per
// received message: run-length encoding lets a few bytes declare billions.
const maxOpsPerMessage = 1 << 22

// objKind is the kind of an Automerge object as far as keys are concerned.
type objKind uint8

const (
	objMap objKind = iota + 1 // map or table: string keys
	objSeq                    // list or text: element IDs
)

// opID identifies an operation (and the object it creates) across changes.
type opID struct {
	ctr   uint64
	actor string // hex
}

// objTable records the kind of every object of a document.
type objTable map[opID]objKind

// errBadOps marks changes refused by the operation check.
var errBadOps = errors.New("malformed operations")

// changeOps is the part of a change the operation check needs.
type changeOps struct {
	actors  []string // the change's actor table: its author, then the other actors
	startOp uint64
	cols    map[uint64][]byte // column data by spec
}

// parseChangeOps decodes the actor table and column layout of a change
// whose header was parsed by parseChange (rest is what follows the message).
func parseChangeOps(ci ChangeInfo, rest []byte) (*changeOps, error) {
	r := &reader{b: rest}
	co := &changeOps{actors: []string{ci.Actor}, startOp: ci.StartOp, cols: map[uint64][]byte{}}
	n := r.count(1)
	for range n {
		co.actors = append(co.actors, hex.EncodeToString(r.bytes()))
	}
	ncols := r.count(2)
	type colMeta struct{ spec, n uint64 }
	metas := make([]colMeta, 0, ncols)
	var total uint64
	for range ncols {
		m := colMeta{r.uleb(), r.uleb()}
		if r.err != nil {
			break
		}
		if m.spec&8 != 0 {
			return nil, fmt.Errorf("%w: compressed column in a change", errBadOps)
		}
		if len(metas) > 0 && m.spec <= metas[len(metas)-1].spec {
			return nil, fmt.Errorf("%w: columns out of order", errBadOps)
		}
		total += m.n
		if total > uint64(len(rest)) {
			return nil, fmt.Errorf("%w: columns longer than the change", errBadOps)
		}
		metas = append(metas, m)
	}
	for _, m := range metas {
		co.cols[m.spec] = r.take(m.n)
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: %v", errBadOps, r.err)
	}
	return co, nil
}

// checkOps walks the operations of a change and checks every property the
// core relies on, against the known objects (known is not modified; objects
// the change creates are added to created).
func (co *changeOps) checkOps(known, created objTable, budget *int) error {
	return co.walk(known, created, budget, true)
}

// collectObjects adds the objects a change of the document creates to objs,
// without checking it (the core has applied it already).
func (co *changeOps) collectObjects(objs objTable) error {
	budget := math.MaxInt
	return co.walk(objs, objs, &budget, false)
}

// walk implements checkOps and collectObjects.
func (co *changeOps) walk(known, created objTable, budget *int, strict bool) error {
	objActor := newRLE(co.cols[colObjActor], (*reader).uleb)
	objCtr := newRLE(co.cols[colObjCtr], (*reader).uleb)
	keyActor := newRLE(co.cols[colKeyActor], (*reader).uleb)
	keyCtr := newDelta(co.cols[colKeyCtr])
	keyStr := newRLE(co.cols[colKeyStr], (*reader).str)
	insert := &boolDecoder{r: reader{b: co.cols[colInsert]}}
	action := newRLE(co.cols[colAction], (*reader).uleb)
	predGroup := newRLE(co.cols[colPredGroup], (*reader).uleb)
	predActor := newRLE(co.cols[colPredActor], (*reader).uleb)
	predCtr := newDelta(co.cols[colPredCtr])

	nActors := uint64(len(co.actors))
	kindOf := func(id opID) (objKind, bool) {
		if k, ok := created[id]; ok {
			return k, true
		}
		k, ok := known[id]
		return k, ok
	}
	fail := func(i int, format string, args ...any) error {
		return fmt.Errorf("%w: op %d: %s", errBadOps, i, fmt.Sprintf(format, args...))
	}
	// check reports a violated property: an error when strict, else nothing.
	check := func(i int, format string, args ...any) error {
		if !strict {
			return nil
		}
		return fail(i, format, args...)
	}
	for i := 0; ; i++ {
		act, actNull, done, err := action.next()
		if err != nil {
			return fail(i, "action column: %v", err)
		}
		if done {
			if i == 0 {
				return nil
			}
			break
		}
		if actNull {
			return fail(i, "no action")
		}
		if *budget--; *budget < 0 {
			return fmt.Errorf("%w: more than %d operations", errBadOps, maxOpsPerMessage)
		}
		// Object.
		oa, oaNull, _, err1 := objActor.next()
		oc, ocNull, _, err2 := objCtr.next()
		if err := errors.Join(err1, err2); err != nil {
			return fail(i, "object columns: %v", err)
		}
		var kind objKind
		switch {
		case oaNull && ocNull:
			kind = objMap // the root
		case oaNull || ocNull:
			return fail(i, "half an object ID")
		case oa >= nActors:
			return fail(i, "object actor index %d out of range (%d actors)", oa, nActors)
		case oc == 0:
			return fail(i, "object counter 0")
		default:
			k, ok := kindOf(opID{oc, co.actors[oa]})
			if !ok {
				if err := check(i, "unknown object %d@%s", oc, co.actors[oa]); err != nil {
					return err
				}
			}
			kind = k
		}
		// Key.
		ka, kaNull, _, err1 := keyActor.next()
		kc, kcNull, _, err2 := keyCtr.next()
		_, ksNull, _, err3 := keyStr.next()
		ins, err4 := insert.next()
		if err := errors.Join(err1, err2, err3, err4); err != nil {
			return fail(i, "key columns: %v", err)
		}
		switch {
		case !ksNull && kaNull && kcNull: // a map key
			if kind != objMap {
				if err := check(i, "map key on a list or text object"); err != nil {
					return err
				}
			}
			if ins {
				if err := check(i, "insert into a map"); err != nil {
					return err
				}
			}
		case ksNull && kaNull && !kcNull && kc == 0: // the head of a sequence
			if kind != objSeq {
				if err := check(i, "list position on a map"); err != nil {
					return err
				}
			}
		case ksNull && !kaNull && !kcNull && kc > 0: // an element ID
			if kind != objSeq {
				if err := check(i, "list position on a map"); err != nil {
					return err
				}
			}
			if ka >= nActors {
				return fail(i, "key actor index %d out of range (%d actors)", ka, nActors)
			}
		default:
			return fail(i, "malformed key")
		}
		// Predecessors.
		g, gNull, _, err := predGroup.next()
		if err != nil {
			return fail(i, "predecessor count: %v", err)
		}
		if gNull {
			g = 0
		}
		if g > uint64(*budget) {
			return fail(i, "%d predecessors", g)
		}
		for range g {
			pa, paNull, _, err1 := predActor.next()
			pc, pcNull, _, err2 := predCtr.next()
			if err := errors.Join(err1, err2); err != nil {
				return fail(i, "predecessor columns: %v", err)
			}
			if paNull || pcNull || pc <= 0 {
				return fail(i, "malformed predecessor")
			}
			if pa >= nActors {
				return fail(i, "predecessor actor index %d out of range (%d actors)", pa, nActors)
			}
		}
		// Objects this operation creates.
		id := opID{co.startOp + uint64(i), co.actors[0]}
		if co.startOp > math.MaxUint32 || id.ctr < co.startOp {
			return fail(i, "operation counter too large")
		}
		switch act {
		case actionMakeMap, actionMakeTable:
			created[id] = objMap
		case actionMakeList, actionMakeText:
			created[id] = objSeq
		}
	}
	return nil
}

// rle decodes Automerge's run-length encoding lazily: runs of a repeated
// value (positive signed count, then the value), literal runs (negative
// count, then that many values) and null runs (0, then an unsigned count).
// A declared run length costs nothing until values are taken.
type rle[T any] struct {
	r    reader
	read func(*reader) T
	n    uint64 // values left in the current run
	lit  bool
	null bool
	v    T
}

func newRLE[T any](b []byte, read func(*reader) T) *rle[T] {
	return &rle[T]{r: reader{b: b}, read: read}
}

// next returns the next value; null for a null, done when the column is
// exhausted (which reads as nulls for optional columns).
func (d *rle[T]) next() (v T, null, done bool, err error) {
	if d.n == 0 {
		if d.r.remaining() == 0 {
			return v, true, true, nil
		}
		c := d.r.sleb()
		switch {
		case c > 0:
			d.n, d.lit, d.null = uint64(c), false, false
			d.v = d.read(&d.r)
		case c < 0:
			d.n, d.lit, d.null = uint64(-(c+1))+1, true, false
		default:
			d.n, d.lit, d.null = d.r.uleb(), false, true
			if d.r.err == nil && d.n == 0 {
				d.r.fail(fmt.Errorf("empty null run"))
			}
		}
		if d.r.err != nil {
			return v, false, false, d.r.err
		}
	}
	d.n--
	if d.null {
		return v, true, false, nil
	}
	if d.lit {
		d.v = d.read(&d.r)
		if d.r.err != nil {
			return v, false, false, d.r.err
		}
	}
	return d.v, false, false, nil
}

// delta decodes a delta-encoded integer column: run-length encoded signed
// differences, each value the running sum.
type delta struct {
	rle *rle[int64]
	abs int64
}

func newDelta(b []byte) *delta { return &delta{rle: newRLE(b, (*reader).sleb)} }

func (d *delta) next() (v int64, null, done bool, err error) {
	x, null, done, err := d.rle.next()
	if err != nil || null || done {
		return 0, null, done, err
	}
	d.abs += x
	return d.abs, false, false, nil
}

// boolDecoder decodes a boolean column: alternating run lengths (uLEB128),
// starting with a run of false. An exhausted column reads as false.
type boolDecoder struct {
	r       reader
	cur     bool
	n       uint64
	started bool
}

func (d *boolDecoder) next() (bool, error) {
	for d.n == 0 {
		if d.r.remaining() == 0 {
			return false, nil
		}
		if d.started {
			d.cur = !d.cur
		}
		d.started = true
		d.n = d.r.uleb()
		if d.r.err != nil {
			return false, d.r.err
		}
	}
	d.n--
	return d.cur, nil
}

// overlay checks a sequence of changes against a document index plus the
// changes of the sequence checked so far.
type overlay struct {
	idx     *docIndex
	created objTable          // objects created by the changes checked so far
	seqs    map[string]uint64 // changes checked so far, by actor
}

func newOverlay(idx *docIndex) *overlay {
	return &overlay{idx: idx, created: objTable{}, seqs: map[string]uint64{}}
}

// check checks the next change to be applied: its sequence number must
// follow its actor's previous change exactly (the core indexes an actor's
// changes by sequence number and aborts on a gap), and its operations must
// pass checkOps.
func (ov *overlay) check(c ChangeInfo, rest []byte, budget *int) error {
	if want := ov.idx.seqs[c.Actor] + ov.seqs[c.Actor] + 1; c.Seq != want {
		return fmt.Errorf("%w: sequence number %d, want %d (actor's changes must be applied in order, without gaps or repeats)", errBadOps, c.Seq, want)
	}
	co, err := parseChangeOps(c, rest)
	if err != nil {
		return err
	}
	if err := co.checkOps(ov.idx.objs, ov.created, budget); err != nil {
		return err
	}
	ov.seqs[c.Actor]++
	return nil
}
