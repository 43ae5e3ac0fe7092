package framesync

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// XYZ and extended XYZ (extxyz), following the conventions of ASE's
// ase/io/extxyz.py; docs/xyz.md describes the mapping onto Frame.
//
// A frame is an atom count line, a comment line and one line per atom:
//
//	2
//	Lattice="5.0 0.0 0.0 0.0 5.0 0.0 0.0 0.0 5.0" Properties=species:S:1:pos:R:3:forces:R:3 energy=-1.5 pbc="T T T"
//	H  0.0 0.0 0.0  0.1 0.0 0.0
//	O  0.0 0.0 1.0 -0.1 0.0 0.0
//
// The comment line holds key=value pairs; Properties lists the per-atom
// columns as name:type:count triples (type R real, I integer, S string,
// L logical T/F).

// Limits of the XYZ reader.
const (
	xyzMaxLine    = 16 << 20          // longest line accepted, in bytes
	xyzMaxColumns = 1 << 16           // most columns one property may span
	xyzMaxAtoms   = math.MaxInt32 / 3 // most atoms in one frame (positions must fit an Array)
	xyzBufSize    = 64 << 10          // read buffer
	xyzPrealloc   = 4096              // values per column allocated ahead of the data
	xyzJSONDepth  = maxDims           // deepest nesting of a _JSON array
)

// Element symbols by atomic number; 0 is "X", ASE's dummy atom.
var elementSymbols = [...]string{
	"X", "H", "He", "Li", "Be", "B", "C", "N", "O", "F", "Ne", "Na", "Mg", "Al", "Si", "P", "S", "Cl", "Ar",
	"K", "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge", "As", "Se", "Br", "Kr",
	"Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd", "In", "Sn", "Sb", "Te", "I", "Xe",
	"Cs", "Ba", "La", "Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu",
	"Hf", "Ta", "W", "Re", "Os", "Ir", "Pt", "Au", "Hg", "Tl", "Pb", "Bi", "Po", "At", "Rn",
	"Fr", "Ra", "Ac", "Th", "Pa", "U", "Np", "Pu", "Am", "Cm", "Bk", "Cf", "Es", "Fm", "Md", "No", "Lr",
	"Rf", "Db", "Sg", "Bh", "Hs", "Mt", "Ds", "Rg", "Cn", "Nh", "Fl", "Mc", "Lv", "Ts", "Og",
}

// elementNumbers maps a symbol to its atomic number; read only.
var elementNumbers = func() map[string]int64 {
	m := make(map[string]int64, len(elementSymbols))
	for z, s := range elementSymbols {
		m[s] = int64(z)
	}
	return m
}()

// atomicNumber returns the atomic number of an element symbol, capitalized
// first as ASE does ("SI" and "si" are silicon).
func atomicNumber(sym string) (int64, bool) {
	if len(sym) == 0 || len(sym) > 2 {
		return 0, false
	}
	b := []byte{upperASCII(sym[0])}
	if len(sym) == 2 {
		b = append(b, lowerASCII(sym[1]))
	}
	z, ok := elementNumbers[string(b)]
	return z, ok
}

func upperASCII(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c - 'A' + 'a'
	}
	return c
}

// isCalcPerConfig reports whether ASE reads the comment line key name as a
// calculator result (its per_config_properties).
func isCalcPerConfig(name string) bool {
	switch name {
	case "energy", "free_energy", "stress", "dipole", "magmom":
		return true
	}
	return false
}

// isCalcPerAtom reports whether ASE reads the column name as a calculator
// result (its per_atom_properties; the column of "charges" is "charge").
func isCalcPerAtom(name string) bool {
	switch name {
	case "forces", "stresses", "charges", "magmoms", "energies":
		return true
	}
	return false
}

// isPySpace reports whether Python's str.isspace holds for r: Go's white
// space plus the separators U+001C..U+001F. ASE splits lines with str.split.
func isPySpace(r rune) bool { return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f) }

// XYZReader reads frames one at a time from plain XYZ or extended XYZ text,
// holding only the current frame in memory. A comment line is read as
// extxyz key=value pairs when it has at least one such pair and parses, or
// when it mentions Properties= or Lattice= (then it must parse); any other
// comment line is kept whole as Info["comment"].
type XYZReader struct {
	r      *bufio.Reader
	line   int      // number of the last line read, from 1
	buf    []byte   // the current line
	fields []string // scratch for the columns of an atom line
	err    error    // sticky: once set, Next returns it
}

// NewXYZReader returns a reader of the frames in r. It buffers r.
func NewXYZReader(r io.Reader) *XYZReader {
	return &XYZReader{r: bufio.NewReaderSize(r, xyzBufSize)}
}

// Line returns the number (from 1) of the last line read: after an error,
// the line the error is about.
func (x *XYZReader) Line() int { return x.line }

// Next returns the next frame, or io.EOF after the last one (blank lines
// between and after frames are skipped). Malformed input gives a BadInput
// *Error whose message starts with "line N: "; a line longer than 16 MiB
// gives TooLarge. After an error, Next keeps returning it.
func (x *XYZReader) Next() (*Frame, error) {
	if x.err != nil {
		return nil, x.err
	}
	f, err := x.next()
	if err != nil {
		x.err = err
	}
	return f, err
}

// errorf returns a BadInput error about the current line.
func (x *XYZReader) errorf(format string, args ...any) error {
	return &Error{Kind: BadInput, Op: "read xyz", Msg: fmt.Sprintf("line %d: ", x.line) + fmt.Sprintf(format, args...)}
}

// readLine returns the next line without its line ending. The result is
// valid until the next call. It returns io.EOF only at the end of input.
func (x *XYZReader) readLine() (string, error) {
	x.buf = x.buf[:0]
	for {
		chunk, err := x.r.ReadSlice('\n')
		if len(x.buf)+len(chunk) > xyzMaxLine {
			x.line++
			return "", &Error{Kind: TooLarge, Op: "read xyz", Msg: fmt.Sprintf("line %d: longer than %d bytes", x.line, xyzMaxLine)}
		}
		x.buf = append(x.buf, chunk...)
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF && len(x.buf) == 0:
			return "", io.EOF
		case err != nil && err != io.EOF:
			return "", fmt.Errorf("read xyz: after line %d: %w", x.line, err)
		}
		x.line++
		b := bytes.TrimSuffix(x.buf, []byte("\n"))
		b = bytes.TrimSuffix(b, []byte("\r"))
		if i := bytes.IndexAny(b, "\r\x00"); i >= 0 {
			// Python, like ASE, would see a line break at a lone CR.
			return "", x.errorf("unexpected %q at byte %d", b[i], i+1)
		}
		if !utf8.Valid(b) {
			return "", x.errorf("invalid UTF-8")
		}
		return string(b), nil
	}
}

func (x *XYZReader) next() (*Frame, error) {
	var head string
	for head == "" {
		line, err := x.readLine()
		if err != nil {
			return nil, err
		}
		head = strings.TrimFunc(line, isPySpace)
	}
	n, err := parseAtomCount(head)
	if err != nil {
		return nil, x.errorf("%v", err)
	}
	comment, err := x.readLine()
	if err == io.EOF {
		return nil, x.errorf("unexpected end of input: frame of %d atoms has no comment line", n)
	}
	if err != nil {
		return nil, err
	}
	h, err := parseComment(comment)
	if err != nil {
		return nil, x.errorf("%v", err)
	}
	for _, p := range h.props {
		if n*p.cols > math.MaxInt32 {
			return nil, x.errorf("%d atoms of %d %s columns exceed the limit of %d values", n, p.cols, p.name, math.MaxInt32)
		}
	}
	cols := newAtomColumns(h.props, n)
	for i := range n {
		line, err := x.readLine()
		if err == io.EOF {
			return nil, x.errorf("unexpected end of input: frame declares %d atoms, found %d", n, i)
		}
		if err != nil {
			return nil, err
		}
		if err := x.readAtom(cols, line); err != nil {
			return nil, err
		}
	}
	return h.frame(cols, n), nil
}

// parseAtomCount parses the first line of a frame as Python's int() would.
func parseAtomCount(s string) (int, error) {
	v, err := pyInt(s)
	switch {
	case err != nil && strings.HasPrefix(s, "VEC"):
		return 0, errors.New("cell vector lines (ASE's VEC1..VEC3 pseudo atoms) are not supported")
	case err != nil:
		return 0, fmt.Errorf("want the atom count of a frame, got %s", quoteShort(s))
	case v < 0:
		return 0, fmt.Errorf("negative atom count %d", v)
	case v > xyzMaxAtoms:
		return 0, fmt.Errorf("atom count %d exceeds the limit of %d", v, xyzMaxAtoms)
	}
	return int(v), nil
}

// Where a column's values go.
const (
	toArrays    = iota // Frame.Arrays[name]
	toCalc             // Frame.Calc[name]
	toSymbols          // element symbols: Frame.Numbers (unless a Z column is present)
	toNumbers          // atomic numbers: Frame.Numbers
	toPositions        // Frame.Positions
)

// xyzProp is one entry of Properties: a per-atom property spanning cols columns.
type xyzProp struct {
	name string // as in the file
	key  string // the Arrays or Calc key
	typ  byte   // 'R', 'I', 'S' or 'L'
	cols int
	dest int // toArrays, ...
}

// defaultProps is what ASE assumes when Properties is absent.
var defaultProps = []xyzProp{
	{name: "species", typ: 'S', cols: 1, dest: toSymbols},
	{name: "pos", typ: 'R', cols: 3, dest: toPositions},
}

// parseProperties parses a Properties value such as
// "species:S:1:pos:R:3:forces:R:3".
func parseProperties(s string) ([]xyzProp, error) {
	f := strings.Split(s, ":")
	if len(f)%3 != 0 {
		return nil, errors.New("want name:type:columns triples")
	}
	props := make([]xyzProp, 0, len(f)/3)
	seen := make(map[string]string) // destination -> property name
	for i := 0; i < len(f); i += 3 {
		p := xyzProp{name: f[i], key: f[i]}
		if err := checkKey(p.name); err != nil {
			return nil, fmt.Errorf("column name %s: %v", quoteShort(p.name), err)
		}
		if len(f[i+1]) != 1 || !strings.Contains("RISL", f[i+1]) {
			return nil, fmt.Errorf("column %s has type %s (want R, I, S or L)", p.name, quoteShort(f[i+1]))
		}
		p.typ = f[i+1][0]
		cols, err := strconv.Atoi(f[i+2])
		if err != nil || cols < 1 || cols > xyzMaxColumns {
			return nil, fmt.Errorf("column %s spans %s columns (want 1 to %d)", p.name, quoteShort(f[i+2]), xyzMaxColumns)
		}
		p.cols = cols
		dest := ""
		switch p.name {
		case "species", "symbols":
			// Any type: ASE writes species:R:1 for a frame of no atoms.
			p.dest, dest = toSymbols, "element symbols"
			if p.cols != 1 {
				return nil, fmt.Errorf("column %s must be S:1, got %c:%d", p.name, p.typ, p.cols)
			}
		case "Z", "numbers":
			p.dest, dest = toNumbers, "atomic numbers"
			if p.typ != 'I' || p.cols != 1 {
				return nil, fmt.Errorf("column %s must be I:1, got %c:%d", p.name, p.typ, p.cols)
			}
		case "pos", "positions":
			p.dest, dest = toPositions, "positions"
			if (p.typ != 'R' && p.typ != 'I') || p.cols != 3 {
				return nil, fmt.Errorf("column %s must be R:3, got %c:%d", p.name, p.typ, p.cols)
			}
		case "charge", "charges":
			p.dest, p.key = toCalc, "charges"
			dest = GroupCalc + ".charges"
		default:
			if isCalcPerAtom(p.name) {
				p.dest, dest = toCalc, GroupCalc+"."+p.name
			} else {
				dest = GroupArrays + "." + p.name
			}
		}
		if other, ok := seen[dest]; ok {
			return nil, fmt.Errorf("columns %s and %s both give %s", other, p.name, dest)
		}
		seen[dest] = p.name
		props = append(props, p)
	}
	if _, ok := seen["positions"]; !ok {
		return nil, errors.New("no pos column")
	}
	return props, nil
}

// atomColumns accumulates the values of one frame's per-atom properties.
type atomColumns struct {
	props []xyzProp
	width int // total number of columns
	vals  []colValues
}

type colValues struct {
	f []float64
	i []int64
	b []bool
	s []string
}

func newAtomColumns(props []xyzProp, n int) *atomColumns {
	c := &atomColumns{props: props, vals: make([]colValues, len(props))}
	for k, p := range props {
		c.width += p.cols
		v := &c.vals[k]
		pre := min(n*p.cols, xyzPrealloc) // grown by append as lines arrive
		switch {
		case p.dest == toSymbols || p.dest == toNumbers || p.typ == 'I':
			v.i = make([]int64, 0, pre)
		case p.typ == 'R':
			v.f = make([]float64, 0, pre)
		case p.typ == 'L':
			v.b = make([]bool, 0, pre)
		default:
			v.s = make([]string, 0, pre)
		}
	}
	return c
}

// readAtom parses one atom line into cols. Columns beyond those listed in
// Properties are ignored, as ASE does.
func (x *XYZReader) readAtom(cols *atomColumns, line string) error {
	x.fields = splitFields(x.fields[:0], line)
	if len(x.fields) < cols.width {
		return x.errorf("want %d columns (from Properties), got %d", cols.width, len(x.fields))
	}
	at := 0
	for k, p := range cols.props {
		v := &cols.vals[k]
		for range p.cols {
			tok := x.fields[at]
			at++
			var want string
			switch {
			case p.dest == toSymbols:
				z, ok := atomicNumber(tok)
				if !ok {
					return x.errorf("column %d (%s): unknown element symbol %s", at, p.name, quoteShort(tok))
				}
				v.i = append(v.i, z)
			case p.typ == 'I':
				i, err := pyInt(tok)
				switch {
				case err != nil || i < math.MinInt32 || i > math.MaxInt32:
					want = "an integer within int32 (ASE reads I columns as int32)"
				case p.dest == toNumbers && (i < 0 || i >= int64(len(elementSymbols))):
					want = fmt.Sprintf("an atomic number from 0 to %d", len(elementSymbols)-1)
				}
				v.i = append(v.i, i)
			case p.typ == 'R':
				f, err := pyFloat(tok)
				if err != nil {
					want = "a real number"
				}
				v.f = append(v.f, f)
			case p.typ == 'L':
				b, ok := columnBool(tok)
				if !ok {
					want = "a logical (T, F, True or False)"
				}
				v.b = append(v.b, b)
			default:
				v.s = append(v.s, tok)
			}
			if want != "" {
				return x.errorf("column %d (%s): want %s, got %s", at, p.name, want, quoteShort(tok))
			}
		}
	}
	return nil
}

// columnBool parses a per-atom logical as ASE does.
func columnBool(s string) (bool, bool) {
	switch s {
	case "T", "True":
		return true, true
	case "F", "False":
		return false, true
	}
	return false, false
}

// splitFields appends the fields of s separated by Python white space to dst.
func splitFields(dst []string, s string) []string {
	start := -1
	for i, r := range s {
		if isPySpace(r) {
			if start >= 0 {
				dst = append(dst, s[start:i])
				start = -1
			}
		} else if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		dst = append(dst, s[start:])
	}
	return dst
}

// xyzHeader is what a comment line says about its frame.
type xyzHeader struct {
	props []xyzProp
	cell  *Array
	pbc   *Array
	info  map[string]any
	calc  map[string]any
}

// frame assembles a frame of n atoms from the header and the columns read.
func (h *xyzHeader) frame(cols *atomColumns, n int) *Frame {
	f := &Frame{Cell: h.cell, PBC: h.pbc, Info: h.info, Calc: h.calc}
	var symbols []int64
	for k, p := range cols.props {
		v := cols.vals[k]
		shape := []int{n}
		if p.cols > 1 {
			shape = append(shape, p.cols)
		}
		var a *Array
		switch {
		case p.dest == toSymbols:
			symbols = v.i
			continue
		case p.dest == toPositions && v.i != nil: // I:3 positions
			fs := make([]float64, len(v.i))
			for j, x := range v.i {
				fs[j] = float64(x)
			}
			a = Float64Array(fs, shape...)
		case v.f != nil:
			a = Float64Array(v.f, shape...)
		case v.i != nil:
			a = Int64Array(v.i, shape...)
		case v.b != nil:
			a = BoolArray(v.b, shape...)
		default:
			a = StringArray(v.s, shape...)
		}
		switch p.dest {
		case toNumbers:
			f.Numbers = a
		case toPositions:
			f.Positions = a
		case toCalc:
			if f.Calc == nil {
				f.Calc = make(map[string]any)
			}
			f.Calc[p.key] = a
		default:
			if f.Arrays == nil {
				f.Arrays = make(map[string]*Array)
			}
			f.Arrays[p.key] = a
		}
	}
	if f.Numbers == nil { // a Z column wins over species, as in ASE
		if symbols == nil {
			symbols = make([]int64, n) // no species: dummy atoms "X"
		}
		f.Numbers = Int64Array(symbols)
	}
	return f
}

// parseComment parses a comment line. A line that mentions Properties= or
// Lattice= must parse as extxyz; any other line that does not parse, or has
// no key=value pair, is a plain XYZ comment kept as Info["comment"].
func parseComment(line string) (*xyzHeader, error) {
	s := strings.TrimFunc(line, isPySpace)
	strict := strings.Contains(s, "Properties=") || strings.Contains(s, "Lattice=")
	pairs, err := splitPairs(s)
	if err == nil {
		hasValue := false
		for _, p := range pairs {
			hasValue = hasValue || p.hasValue
		}
		if hasValue || strict {
			h, err := headerFromPairs(pairs)
			if err == nil || strict {
				return h, err
			}
		}
	} else if strict {
		return nil, err
	}
	h := &xyzHeader{props: defaultProps, pbc: BoolArray(make([]bool, 3))}
	if s != "" {
		h.info = map[string]any{"comment": s}
	}
	return h, nil
}

// kvPair is one key=value (or bare key) entry of a comment line, unquoted.
type kvPair struct {
	key, value string
	hasValue   bool
}

// splitPairs splits an extxyz comment line into key=value pairs, with the
// rules of ASE's key_val_str_to_dict: values may be quoted with double or
// single quotes, braces or brackets; a backslash escapes the next character
// anywhere; white space may surround '='; further '=' belong to the value;
// a bare key has no value. Unlike ASE, an empty quoted value ends its pair,
// and an unterminated quote or a trailing backslash is an error.
func splitPairs(s string) ([]kvPair, error) {
	var (
		pairs   [][]string // finished pairs: key and value parts
		parts   []string   // finished parts of the current pair
		cur     strings.Builder
		seen    bool // the current part has content or a quote
		quote   rune // the closing delimiter while inside quotes
		escaped bool
	)
	endPair := func() {
		pairs = append(pairs, append(parts, cur.String()))
		parts, seen = nil, false
		cur.Reset()
	}
	for _, r := range s {
		switch {
		case escaped:
			cur.WriteRune(r)
			seen, escaped = true, false
		case r == '\\':
			escaped = true
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '"' || r == '\'':
			quote, seen = r, true
		case r == '{':
			quote, seen = '}', true
		case r == '[':
			quote, seen = ']', true
		case isPySpace(r):
			if seen {
				endPair()
			}
		case r == '=':
			if len(parts) > 0 || seen {
				parts = append(parts, cur.String())
				cur.Reset()
				seen = false
				break
			}
			// "key =value": the '=' continues the previous pair.
			if len(pairs) == 0 {
				return nil, errors.New("'=' without a key")
			}
			parts = pairs[len(pairs)-1]
			pairs = pairs[:len(pairs)-1]
		default:
			cur.WriteRune(r)
			seen = true
		}
	}
	switch {
	case escaped:
		return nil, errors.New("line ends with a backslash")
	case quote != 0:
		return nil, fmt.Errorf("unterminated quote (missing %c)", quote)
	case seen || len(parts) > 0:
		endPair()
	}
	out := make([]kvPair, len(pairs))
	for i, p := range pairs {
		out[i] = kvPair{key: p[0], value: strings.Join(p[1:], "="), hasValue: len(p) > 1}
	}
	return out, nil
}

// headerFromPairs interprets the key=value pairs of a comment line.
func headerFromPairs(pairs []kvPair) (*xyzHeader, error) {
	h := &xyzHeader{props: defaultProps}
	var lattice []float64
	for _, p := range pairs {
		if !p.hasValue {
			p.value = "T" // a bare key is a true flag
		}
		switch key := p.key; {
		case key == "Properties":
			props, err := parseProperties(p.value)
			if err != nil {
				return nil, fmt.Errorf("%s=%s: %w", key, quoteShort(p.value), err)
			}
			h.props = props
		case key == "Lattice":
			v, err := nineNumbers(key, p.value)
			if err != nil {
				return nil, err
			}
			lattice, _ = v.Float64s()
			for _, x := range lattice {
				if math.IsNaN(x) || math.IsInf(x, 0) {
					return nil, fmt.Errorf("the cell (Lattice=%s) holds a number that is not finite", quoteShort(p.value))
				}
			}
		case key == "pbc":
			pbc, err := parsePBC(p.value)
			if err != nil {
				return nil, err
			}
			h.pbc = pbc
		case key == "stress":
			// Calculator stress, a 3x3 matrix in the file and Voigt
			// order (xx yy zz yz xz xy) in ASE's results.
			v, err := nineNumbers(key, p.value)
			if err != nil {
				return nil, err
			}
			m, _ := v.Float64s() // row-major
			h.setCalc(key, Float64Array([]float64{m[0], m[4], m[8], m[5], m[2], m[1]}))
		default:
			if err := checkKey(key); err != nil {
				return nil, fmt.Errorf("key %s: %v", quoteShort(key), err)
			}
			var v any
			switch {
			case strings.EqualFold(key, "uid"): // ASE keeps uid verbatim
				v = p.value
			case key == "virial":
				a, err := nineNumbers(key, p.value)
				if err != nil {
					return nil, err
				}
				v = a
			default:
				v = parseInfoValue(p.value)
			}
			if isCalcPerConfig(key) {
				h.setCalc(key, v)
			} else {
				if h.info == nil {
					h.info = make(map[string]any)
				}
				h.info[key] = v
			}
		}
	}
	switch {
	case h.pbc != nil:
	case lattice != nil:
		h.pbc = BoolArray([]bool{true, true, true}) // ASE's default with a Lattice
	default:
		h.pbc = BoolArray(make([]bool, 3))
	}
	if lattice != nil {
		h.cell = Float64Array(lattice, 3, 3)
	}
	return h, nil
}

func (h *xyzHeader) setCalc(key string, v any) {
	if h.calc == nil {
		h.calc = make(map[string]any)
	}
	h.calc[key] = v
}

// nineNumbers parses the value of Lattice, stress or virial: 9 numbers, as
// ASE writes a 3x3 matrix in Fortran (column-major) order. It returns the
// matrix row-major, int64 if all are integers. For Lattice, the matrix
// ASE reads is the transpose of the cell, so the values are the cell
// vectors in order: it returns them as a float64 cell.
func nineNumbers(key, s string) (*Array, error) {
	v := parseNumbers(s)
	if v == nil || v.Size() != 9 || len(v.Shape) != 1 {
		return nil, fmt.Errorf("%s=%s: want 9 numbers (a 3x3 matrix)", key, quoteShort(s))
	}
	if key == "Lattice" {
		fs, _ := v.Float64s()
		return Float64Array(fs, 3, 3), nil
	}
	t := &Array{DType: v.DType, Shape: []int{3, 3}, Data: make([]byte, len(v.Data))}
	for i := range 3 {
		for j := range 3 {
			copy(t.Data[8*(3*i+j):8*(3*i+j+1)], v.Data[8*(3*j+i):]) // t[i][j] = v[3j+i]
		}
	}
	return t, nil
}

// parsePBC parses a pbc value: 1 or 3 logicals (or integers, 0 false).
func parsePBC(s string) (*Array, error) {
	var out []bool
	switch v := parseInfoValue(s).(type) {
	case bool:
		out = []bool{v, v, v}
	case int64:
		out = []bool{v != 0, v != 0, v != 0}
	case *Array:
		if v.DType == Bool && v.Size() == 3 {
			out, _ = v.Bools()
		} else if v.DType == Int64 && v.Size() == 3 {
			is, _ := v.Int64s()
			out = []bool{is[0] != 0, is[1] != 0, is[2] != 0}
		}
	}
	if out == nil {
		return nil, fmt.Errorf("pbc=%s: want 3 logicals such as \"T T F\"", quoteShort(s))
	}
	return BoolArray(out), nil
}

// parseInfoValue converts a comment line value the way ASE's
// key_val_str_to_dict does: integers, then reals (one word a scalar, more
// an array; words split at white space and commas), then logicals (T, F,
// true, false, True, False, TRUE, FALSE), then "_JSON <json>", else the
// string itself. JSON that does not fit the frame model (objects, ragged or
// mixed lists) stays a string. An empty value is an empty float64 array.
func parseInfoValue(s string) any {
	if a := parseNumbers(s); a != nil {
		if len(a.Shape) == 0 {
			if a.DType == Int64 {
				is, _ := a.Int64s()
				return is[0]
			}
			fs, _ := a.Float64s()
			return fs[0]
		}
		return a
	}
	words := splitWords(s)
	bools := make([]bool, len(words))
	ok := true
	for i, w := range words {
		if bools[i], ok = infoBool(w); !ok {
			break
		}
	}
	if ok {
		if len(bools) == 1 {
			return bools[0]
		}
		return BoolArray(bools)
	}
	if js, ok := strings.CutPrefix(s, "_JSON "); ok {
		if v, ok := parseJSONValue(js); ok {
			return v
		}
	}
	return s
}

// parseNumbers parses s as one or more integers, or else reals. It returns
// a 0-d array for one number, a 1-d array for several (an empty float64
// array for none), or nil if some word is not a number.
func parseNumbers(s string) *Array {
	words := splitWords(s)
	if len(words) == 0 {
		return Float64Array(nil)
	}
	var shape []int
	if len(words) > 1 {
		shape = []int{len(words)}
	}
	ints := make([]int64, len(words))
	isInt := true
	for i, w := range words {
		v, err := pyInt(w)
		if err != nil {
			isInt = false
			break
		}
		ints[i] = v
	}
	if isInt {
		return &Array{DType: Int64, Shape: shape, Data: Int64Array(ints).Data}
	}
	fs := make([]float64, len(words))
	for i, w := range words {
		v, err := pyFloat(w)
		if err != nil {
			return nil
		}
		fs[i] = v
	}
	return &Array{DType: Float64, Shape: shape, Data: Float64Array(fs).Data}
}

// splitWords splits a value at white space and commas, like ASE's
// re.findall(r'[^\s,]+', value).
func splitWords(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || isPySpace(r) })
}

func infoBool(s string) (bool, bool) {
	switch s {
	case "T", "true", "True", "TRUE":
		return true, true
	case "F", "false", "False", "FALSE":
		return false, true
	}
	return false, false
}

var errSyntax = errors.New("invalid syntax")

// pyNumber removes the '_' digit separators Python accepts between digits,
// and rejects forms Go parses but Python does not (hexadecimal).
func pyNumber(s string) (string, error) {
	if strings.ContainsAny(s, "xX") {
		return "", errSyntax
	}
	if !strings.Contains(s, "_") {
		return s, nil
	}
	isDigit := func(c byte) bool { return '0' <= c && c <= '9' }
	for i := 0; i < len(s); i++ {
		if s[i] == '_' && (i == 0 || i == len(s)-1 || !isDigit(s[i-1]) || !isDigit(s[i+1])) {
			return "", errSyntax
		}
	}
	return strings.ReplaceAll(s, "_", ""), nil
}

// pyInt parses s as Python's int(s) within int64 (numpy's int).
func pyInt(s string) (int64, error) {
	s, err := pyNumber(s)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(s, 10, 64)
}

// pyFloat parses s as Python's float(s): decimal notation, inf, infinity
// and nan in any case and with a sign; out of range values become ±Inf.
func pyFloat(s string) (float64, error) {
	s, err := pyNumber(s)
	if err != nil {
		return 0, err
	}
	if t := strings.TrimLeft(s, "+-"); len(s)-len(t) <= 1 && strings.EqualFold(t, "nan") {
		return math.NaN(), nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, err
	}
	return v, nil
}

// JSON values after "_JSON ". Python's json module also reads NaN, Infinity
// and -Infinity, which ASE writes for such floats.

type jsonNumber struct {
	text  string
	isInt bool
}

type jsonParser struct {
	s     string
	i     int
	depth int
}

// parseJSONValue converts JSON as numpy would: numbers and booleans scalar
// or in rectangular nested lists become scalars and arrays (integers only
// if every number is one), strings and lists of strings become strings and
// string arrays, null becomes nil. It reports false for anything else.
func parseJSONValue(s string) (any, bool) {
	p := jsonParser{s: s}
	v, ok := p.value()
	p.space()
	if !ok || p.i != len(s) {
		return nil, false
	}
	list, isList := v.([]any)
	if !isList {
		if n, ok := v.(jsonNumber); ok {
			return n.value()
		}
		return v, true
	}
	var shape []int
	for x := any(list); ; {
		l, ok := x.([]any)
		if !ok {
			break
		}
		shape = append(shape, len(l))
		if len(l) == 0 {
			break
		}
		x = l[0]
	}
	var leaves []any
	if !flatten(list, shape, &leaves) {
		return nil, false
	}
	return leavesArray(leaves, shape)
}

func (n jsonNumber) value() (any, bool) {
	if n.isInt {
		if v, err := strconv.ParseInt(n.text, 10, 64); err == nil {
			return v, true
		}
	}
	switch n.text {
	case "NaN":
		return math.NaN(), true
	case "Infinity":
		return math.Inf(1), true
	case "-Infinity":
		return math.Inf(-1), true
	}
	v, err := strconv.ParseFloat(n.text, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return nil, false
	}
	return v, true
}

// flatten appends the leaves of x to out, checking that x has the given shape.
func flatten(x any, shape []int, out *[]any) bool {
	l, isList := x.([]any)
	if len(shape) == 0 {
		*out = append(*out, x)
		return !isList
	}
	if !isList || len(l) != shape[0] {
		return false
	}
	for _, e := range l {
		if !flatten(e, shape[1:], out) {
			return false
		}
	}
	return true
}

func leavesArray(leaves []any, shape []int) (any, bool) {
	if len(leaves) == 0 {
		return &Array{DType: Float64, Shape: shape, Data: []byte{}}, true
	}
	switch leaves[0].(type) {
	case bool:
		bs := make([]bool, len(leaves))
		for i, x := range leaves {
			b, ok := x.(bool)
			if !ok {
				return nil, false
			}
			bs[i] = b
		}
		return BoolArray(bs, shape...), true
	case string:
		ss := make([]string, len(leaves))
		for i, x := range leaves {
			s, ok := x.(string)
			if !ok || strings.ContainsRune(s, 0) { // NUL ends a numpy string
				return nil, false
			}
			ss[i] = s
		}
		return StringArray(ss, shape...), true
	case jsonNumber:
		allInt := true
		for _, x := range leaves {
			n, ok := x.(jsonNumber)
			if !ok {
				return nil, false
			}
			allInt = allInt && n.isInt
		}
		if allInt {
			is := make([]int64, len(leaves))
			for i, x := range leaves {
				v, err := strconv.ParseInt(x.(jsonNumber).text, 10, 64)
				if err != nil {
					allInt = false
					break
				}
				is[i] = v
			}
			if allInt {
				return Int64Array(is, shape...), true
			}
		}
		fs := make([]float64, len(leaves))
		for i, x := range leaves {
			v, ok := x.(jsonNumber).value()
			if !ok {
				return nil, false
			}
			switch v := v.(type) {
			case int64:
				fs[i] = float64(v)
			case float64:
				fs[i] = v
			}
		}
		return Float64Array(fs, shape...), true
	}
	return nil, false
}

func (p *jsonParser) space() {
	for p.i < len(p.s) && strings.IndexByte(" \t\n\r", p.s[p.i]) >= 0 {
		p.i++
	}
}

// value parses one JSON value: nil, bool, jsonNumber, string or []any.
// Objects are not supported.
func (p *jsonParser) value() (any, bool) {
	p.space()
	if p.i >= len(p.s) {
		return nil, false
	}
	rest := p.s[p.i:]
	for _, lit := range []struct {
		text string
		v    any
	}{{"null", nil}, {"true", true}, {"false", false}, {"NaN", jsonNumber{text: "NaN"}}, {"Infinity", jsonNumber{text: "Infinity"}}, {"-Infinity", jsonNumber{text: "-Infinity"}}} {
		if strings.HasPrefix(rest, lit.text) {
			p.i += len(lit.text)
			return lit.v, true
		}
	}
	switch c := rest[0]; {
	case c == '[':
		if p.depth >= xyzJSONDepth {
			return nil, false
		}
		p.depth++
		defer func() { p.depth-- }()
		p.i++
		list := []any{}
		p.space()
		if p.i < len(p.s) && p.s[p.i] == ']' {
			p.i++
			return list, true
		}
		for {
			v, ok := p.value()
			if !ok {
				return nil, false
			}
			list = append(list, v)
			p.space()
			if p.i >= len(p.s) {
				return nil, false
			}
			p.i++
			switch p.s[p.i-1] {
			case ']':
				return list, true
			case ',':
			default:
				return nil, false
			}
		}
	case c == '"':
		end := p.i + 1
		for end < len(p.s) && p.s[end] != '"' {
			if p.s[end] == '\\' {
				end++
			}
			end++
		}
		if end >= len(p.s) {
			return nil, false
		}
		var str string
		if err := json.Unmarshal([]byte(p.s[p.i:end+1]), &str); err != nil {
			return nil, false
		}
		p.i = end + 1
		return str, true
	case c == '-' || ('0' <= c && c <= '9'):
		n := jsonNumberLen(rest)
		if n == 0 {
			return nil, false
		}
		p.i += n
		text := rest[:n]
		return jsonNumber{text: text, isInt: !strings.ContainsAny(text, ".eE")}, true
	}
	return nil, false
}

// jsonNumberLen returns the length of the JSON number at the start of s,
// or 0 if there is none.
func jsonNumberLen(s string) int {
	i := 0
	digits := func() int {
		j := i
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
		}
		return i - j
	}
	if i < len(s) && s[i] == '-' {
		i++
	}
	if i < len(s) && s[i] == '0' {
		i++
	} else if digits() == 0 {
		return 0
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return 0
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return 0
		}
	}
	return i
}

// XYZWriter writes frames as extended XYZ that ASE's
// ase.io.read(..., format="extxyz") reads back to the same values, and
// XYZReader reads back to an equal Frame (see docs/xyz.md for the few
// normalizations). Numbers are written in full precision (shortest
// round-trip form), reals always with a '.' or an exponent.
type XYZWriter struct {
	w   *bufio.Writer
	buf []byte // the frame being formatted
}

// NewXYZWriter returns a writer of frames to w. It buffers: call Flush
// after the last frame.
func NewXYZWriter(w io.Writer) *XYZWriter {
	return &XYZWriter{w: bufio.NewWriterSize(w, xyzBufSize)}
}

// Write validates f and appends it. A frame that cannot be written (an
// invalid frame, a value extxyz cannot hold, a name ASE would read back as
// something else) is a BadInput *Error naming the field, and nothing of it
// is written.
func (x *XYZWriter) Write(f *Frame) error {
	b, err := appendXYZ(x.buf[:0], f)
	if err != nil {
		return err
	}
	x.buf = b
	if _, err := x.w.Write(b); err != nil {
		return fmt.Errorf("write xyz: %w", err)
	}
	return nil
}

// Flush writes any buffered data to the underlying writer.
func (x *XYZWriter) Flush() error {
	if err := x.w.Flush(); err != nil {
		return fmt.Errorf("write xyz: %w", err)
	}
	return nil
}

// outColumn is one property to write: a name, type and the values.
type outColumn struct {
	name string
	typ  byte // 'R', 'I', 'S' or 'L'
	cols int
	f    []float64
	i    []int64
	s    []string
	b    []bool
}

func writeErr(field, format string, args ...any) error {
	return &Error{Kind: BadInput, Op: "write xyz", Field: field, Msg: fmt.Sprintf(format, args...)}
}

// appendXYZ appends the extxyz text of f to b.
func appendXYZ(b []byte, f *Frame) ([]byte, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	n := f.N()
	cols, err := xyzColumns(f, n)
	if err != nil {
		return nil, err
	}
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, '\n')
	if b, err = appendComment(b, f, cols); err != nil {
		return nil, err
	}
	return appendAtoms(b, cols, n), nil
}

// xyzColumns returns the per-atom columns of f: species, pos, Arrays and
// per-atom calculator results.
func xyzColumns(f *Frame, n int) ([]outColumn, error) {
	numbers, err := f.Numbers.Int64s()
	if err != nil {
		return nil, writeErr(FieldNumbers, "%v", err)
	}
	species := make([]string, n)
	for i, z := range numbers {
		if z < 0 || z >= int64(len(elementSymbols)) {
			return nil, writeErr(FieldNumbers, "atom %d has atomic number %d (want 0 to %d)", i, z, len(elementSymbols)-1)
		}
		species[i] = elementSymbols[z]
	}
	pos, _ := f.Positions.Float64s()
	cols := []outColumn{
		{name: "species", typ: 'S', cols: 1, s: species},
		{name: "pos", typ: 'R', cols: 3, f: pos},
	}
	for _, key := range sortedKeys(f.Arrays) {
		field := GroupArrays + "." + key
		switch {
		case key == "species" || key == "symbols" || key == "Z" || key == "numbers" || key == "pos" || key == "positions":
			return nil, writeErr(field, "extxyz reserves the column name %s for numbers and positions", key)
		case key == "charge" || isCalcPerAtom(key):
			return nil, writeErr(field, "ASE reads a %s column as a calculator result: store it in Calc", key)
		}
		c, err := arrayColumn(field, key, f.Arrays[key])
		if err != nil {
			return nil, err
		}
		cols = append(cols, c)
	}
	for _, key := range sortedKeys(f.Calc) {
		field := GroupCalc + "." + key
		switch {
		case isCalcPerConfig(key):
			continue // on the comment line
		case !isCalcPerAtom(key):
			return nil, writeErr(field, "extxyz holds only ASE's calculator results (energy, free_energy, stress, dipole, magmom, forces, stresses, charges, magmoms, energies): store it in Info or Arrays")
		}
		a, ok := f.Calc[key].(*Array)
		if !ok || len(a.Shape) < 1 || len(a.Shape) > 2 || a.Shape[0] != n {
			return nil, writeErr(field, "want a per-atom array of shape [%d] or [%d k]", n, n)
		}
		name := key
		if key == "charges" {
			name = "charge" // ASE's column name
		}
		c, err := arrayColumn(field, name, a)
		if err != nil {
			return nil, err
		}
		cols = append(cols, c)
	}
	return cols, nil
}

// appendComment appends the comment line: Lattice, Properties, Info keys,
// per-configuration calculator results and pbc, in that order.
func appendComment(b []byte, f *Frame, cols []outColumn) ([]byte, error) {
	if f.Cell != nil {
		cell, _ := f.Cell.Float64s()
		b = append(b, `Lattice="`...)
		for i, v := range cell {
			if i > 0 {
				b = append(b, ' ')
			}
			b = appendPyFloat(b, v)
		}
		b = append(b, `" `...)
	}
	var props []byte
	for i, c := range cols {
		if i > 0 {
			props = append(props, ':')
		}
		props = fmt.Appendf(props, "%s:%c:%d", c.name, c.typ, c.cols)
	}
	b = append(b, "Properties="...)
	b = appendToken(b, string(props))
	var err error
	for _, key := range sortedKeys(f.Info) {
		field := GroupInfo + "." + key
		switch {
		case key == "Lattice" || key == "Properties" || key == "pbc":
			return nil, writeErr(field, "extxyz reserves the key %s", key)
		case isCalcPerConfig(key):
			return nil, writeErr(field, "ASE reads %s as a calculator result: store it in Calc", key)
		}
		b = append(b, ' ')
		b = appendToken(b, key)
		b = append(b, '=')
		if key == "virial" {
			b, err = appendMatrix(b, field, f.Info[key], false)
		} else {
			b, err = appendInfoValue(b, field, key, f.Info[key])
		}
		if err != nil {
			return nil, err
		}
	}
	for _, key := range sortedKeys(f.Calc) {
		if !isCalcPerConfig(key) {
			continue // a column
		}
		field := GroupCalc + "." + key
		b = append(b, ' ')
		b = append(b, key...)
		b = append(b, '=')
		if key == "stress" {
			b, err = appendMatrix(b, field, f.Calc[key], true)
		} else {
			b, err = appendInfoValue(b, field, key, f.Calc[key])
		}
		if err != nil {
			return nil, err
		}
	}
	pbc := []bool{false, false, false} // ASE's default for atoms without pbc
	if f.PBC != nil {
		pbc, _ = f.PBC.Bools()
	}
	b = append(b, ` pbc="`...)
	for i, p := range pbc {
		if i > 0 {
			b = append(b, ' ')
		}
		b = appendBool(b, p)
	}
	return append(b, "\"\n"...), nil
}

// appendAtoms appends one line per atom: reals right-aligned in 16
// characters, integers in 8, species left-aligned in 2, as ASE lays out.
func appendAtoms(b []byte, cols []outColumn, n int) []byte {
	var tok []byte
	for i := range n {
		for k, c := range cols {
			for j := range c.cols {
				if k > 0 || j > 0 {
					b = append(b, ' ')
				}
				at := i*c.cols + j
				tok = tok[:0]
				width := 0
				switch c.typ {
				case 'R':
					tok, width = appendPyFloat(tok, c.f[at]), 16
				case 'I':
					tok, width = strconv.AppendInt(tok, c.i[at], 10), 8
				case 'L':
					tok = appendBool(tok, c.b[at])
				default:
					tok = append(tok, c.s[at]...)
				}
				for range width - len(tok) {
					b = append(b, ' ')
				}
				b = append(b, tok...)
				if k == 0 && len(tok) < 2 { // species
					b = append(b, ' ')
				}
			}
		}
		b = append(b, '\n')
	}
	return b
}

// arrayColumn turns a per-atom array into a column named name.
func arrayColumn(field, name string, a *Array) (outColumn, error) {
	c := outColumn{name: name, cols: 1}
	if strings.Contains(name, ":") {
		return c, writeErr(field, "a column name cannot contain ':'")
	}
	if len(a.Shape) == 2 {
		c.cols = a.Shape[1]
	}
	if c.cols < 1 {
		return c, writeErr(field, "shape %v has no columns", a.Shape)
	}
	var err error
	switch a.DType.Kind() {
	case 'f':
		c.typ = 'R'
		c.f, err = a.Float64s()
	case 'i', 'u':
		c.typ = 'I'
		c.i, err = a.Int64s()
		for i, v := range c.i {
			if v < math.MinInt32 || v > math.MaxInt32 {
				return c, writeErr(field, "element %d (%d) is outside the int32 range of ASE's I columns", i, v)
			}
		}
	case 'b':
		c.typ = 'L'
		c.b, err = a.Bools()
	default:
		c.typ = 'S'
		c.s, err = a.Strings()
		for i, s := range c.s {
			if s == "" || strings.IndexFunc(s, isPySpace) >= 0 {
				return c, writeErr(field, "element %d is %s: extxyz column strings must be non-empty without white space", i, quoteShort(s))
			}
		}
	}
	if err != nil {
		return c, writeErr(field, "%v", err)
	}
	return c, nil
}

// appendMatrix appends a 3x3 matrix as 9 numbers in Fortran order, ASE's
// form for stress and virial. With voigt, v must be the 6 Voigt components
// xx yy zz yz xz xy of a symmetric matrix (calculator stress); else v is a
// [3 3] array (virial).
func appendMatrix(b []byte, field string, v any, voigt bool) ([]byte, error) {
	a, ok := v.(*Array)
	want, order := "a numeric array of shape [3 3]", []int{0, 3, 6, 1, 4, 7, 2, 5, 8}
	if voigt {
		want, order = "a numeric array of shape [6] (Voigt order xx yy zz yz xz xy)", []int{0, 5, 4, 5, 1, 3, 4, 3, 2}
	}
	shapeOK := ok && ((voigt && len(a.Shape) == 1 && a.Shape[0] == 6) ||
		(!voigt && len(a.Shape) == 2 && a.Shape[0] == 3 && a.Shape[1] == 3))
	if !shapeOK || (!a.DType.IsFloat() && !a.DType.IsInteger()) {
		return nil, writeErr(field, "want %s", want)
	}
	words := make([][]byte, a.Size())
	if a.DType.IsFloat() {
		fs, _ := a.Float64s()
		for i, x := range fs {
			words[i] = appendPyFloat(nil, x)
		}
	} else {
		is, err := a.Int64s()
		if err != nil {
			return nil, writeErr(field, "%v", err)
		}
		for i, x := range is {
			words[i] = strconv.AppendInt(nil, x, 10)
		}
	}
	b = append(b, '"')
	for i, k := range order {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, words[k]...)
	}
	return append(b, '"'), nil
}

// appendInfoValue appends an Info or Calc value so that ASE and XYZReader
// read it back as the same value.
func appendInfoValue(b []byte, field, key string, v any) ([]byte, error) {
	if strings.EqualFold(key, "uid") { // ASE keeps uid verbatim
		s, ok := v.(string)
		if !ok || strings.ContainsAny(s, "\r\n\x00") || !utf8.ValidString(s) {
			return nil, writeErr(field, "ASE reads uid verbatim: want a string without line breaks or NUL")
		}
		return appendToken(b, s), nil
	}
	switch v := v.(type) {
	case nil:
		return appendQuoted(b, "_JSON null"), nil
	case bool:
		return appendBool(b, v), nil
	case int:
		return strconv.AppendInt(b, int64(v), 10), nil
	case int32:
		return strconv.AppendInt(b, int64(v), 10), nil
	case int64:
		return strconv.AppendInt(b, v, 10), nil
	case uint32:
		return strconv.AppendInt(b, int64(v), 10), nil
	case uint64:
		return strconv.AppendUint(b, v, 10), nil
	case float32:
		return appendPyFloat(b, float64(v)), nil
	case float64:
		return appendPyFloat(b, v), nil
	case string:
		return appendInfoString(b, field, v)
	case *Array:
		return appendInfoArray(b, field, v)
	}
	return nil, writeErr(field, "unsupported value type %T", v)
}

// appendInfoString appends s so that it reads back as the string s: as is
// (quoted when needed) if parseInfoValue gives s back, else (a string that
// reads as a number, a logical or JSON, or holds control characters) as
// "_JSON <s>", which ASE and XYZReader read as a string.
func appendInfoString(b []byte, field, s string) ([]byte, error) {
	if !utf8.ValidString(s) {
		return nil, writeErr(field, "string is not valid UTF-8")
	}
	if strings.IndexFunc(s, unicode.IsControl) < 0 && !strings.HasPrefix(s, "_JSON ") {
		if v, ok := parseInfoValue(s).(string); ok && v == s {
			return appendToken(b, s), nil
		}
	}
	j, _ := json.Marshal(s)
	return appendQuoted(b, "_JSON "+string(j)), nil
}

// appendInfoArray appends an array value: a 1-d numeric or logical array
// of 2 or more elements as ASE writes it ("1 2 3"), a 0-d array as its
// scalar, anything else as "_JSON [...]".
func appendInfoArray(b []byte, field string, a *Array) ([]byte, error) {
	k := a.DType.Kind()
	if k == 'U' || k == 'S' {
		s, err := a.Strings()
		if err != nil {
			return nil, writeErr(field, "%v", err)
		}
		if len(a.Shape) == 0 {
			return appendInfoString(b, field, s[0])
		}
		for i, x := range s {
			if !utf8.ValidString(x) {
				return nil, writeErr(field, "element %d is not valid UTF-8", i)
			}
		}
		j := appendJSONArray([]byte("_JSON "), a.Shape, func(b []byte, i int) []byte {
			e, _ := json.Marshal(s[i])
			return append(b, e...)
		})
		return appendQuoted(b, string(j)), nil
	}
	var elem func(b []byte, i int) []byte // as JSON
	var word func(b []byte, i int) []byte // as a word of "1 2 3"
	switch k {
	case 'b':
		bs, _ := a.Bools()
		elem = func(b []byte, i int) []byte { return strconv.AppendBool(b, bs[i]) }
		word = func(b []byte, i int) []byte { return appendBool(b, bs[i]) }
	case 'f':
		fs, _ := a.Float64s()
		elem = func(b []byte, i int) []byte { return appendJSONFloat(b, fs[i]) }
		word = func(b []byte, i int) []byte { return appendPyFloat(b, fs[i]) }
	default:
		is, err := a.Int64s()
		if err != nil {
			return nil, writeErr(field, "%v", err)
		}
		elem = func(b []byte, i int) []byte { return strconv.AppendInt(b, is[i], 10) }
		word = elem
	}
	size := a.Size()
	switch {
	case len(a.Shape) == 0:
		return word(b, 0), nil
	case len(a.Shape) == 1 && size >= 2:
		b = append(b, '"')
		for i := range size {
			if i > 0 {
				b = append(b, ' ')
			}
			b = word(b, i)
		}
		return append(b, '"'), nil
	}
	return appendQuoted(b, string(appendJSONArray([]byte("_JSON "), a.Shape, elem))), nil
}

// appendJSONArray appends nested JSON lists of the given shape, with elem
// appending element i (in row-major order).
func appendJSONArray(b []byte, shape []int, elem func([]byte, int) []byte) []byte {
	next := 0
	var rec func(b []byte, dims []int) []byte
	rec = func(b []byte, dims []int) []byte {
		if len(dims) == 0 {
			b = elem(b, next)
			next++
			return b
		}
		b = append(b, '[')
		for i := range dims[0] {
			if i > 0 {
				b = append(b, ", "...)
			}
			b = rec(b, dims[1:])
		}
		return append(b, ']')
	}
	return rec(b, shape)
}

// appendPyFloat appends v so that Python's int() rejects it and float()
// reads it back exactly: the shortest round-trip form, with ".0" added to
// integral values ("2.0", "1e+21"), and "nan", "inf", "-inf".
func appendPyFloat(b []byte, v float64) []byte {
	switch {
	case math.IsNaN(v):
		return append(b, "nan"...)
	case math.IsInf(v, 1):
		return append(b, "inf"...)
	case math.IsInf(v, -1):
		return append(b, "-inf"...)
	}
	start := len(b)
	b = strconv.AppendFloat(b, v, 'g', -1, 64)
	if !bytes.ContainsAny(b[start:], ".e") {
		b = append(b, ".0"...)
	}
	return b
}

// appendJSONFloat appends v as Python's json module writes it.
func appendJSONFloat(b []byte, v float64) []byte {
	switch {
	case math.IsNaN(v):
		return append(b, "NaN"...)
	case math.IsInf(v, 1):
		return append(b, "Infinity"...)
	case math.IsInf(v, -1):
		return append(b, "-Infinity"...)
	}
	return appendPyFloat(b, v)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 'T')
	}
	return append(b, 'F')
}

// appendToken appends s, quoted if it is empty or holds white space or a
// character that is special in a comment line.
func appendToken(b []byte, s string) []byte {
	if s != "" && !strings.ContainsAny(s, "\"'{}[]\\=") && strings.IndexFunc(s, isPySpace) < 0 {
		return append(b, s...)
	}
	return appendQuoted(b, s)
}

// appendQuoted appends s in double quotes, escaping '"' and '\' with a
// backslash.
func appendQuoted(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}
