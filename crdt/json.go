package crdt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"unicode/utf8"

	"github.com/automerge/automerge-go"
)

// maxJSONDepth bounds the nesting of JSON values written to a document.
const maxJSONDepth = 64

// normalizeJSON converts a JSON-like Go value into the canonical form this
// package writes and reads: nil, bool, string, int64, float64, []byte,
// []any and map[string]any. Numbers become int64 when integral and in range,
// float64 otherwise (never uint64, which JavaScript reads as a BigInt).
// json.Number and json.RawMessage are accepted; any other value is converted
// through encoding/json.
func normalizeJSON(v any) (any, error) { return normalizeDepth(v, 0) }

func normalizeDepth(v any, depth int) (any, error) {
	if depth > maxJSONDepth {
		return nil, fmt.Errorf("nested deeper than %d levels", maxJSONDepth)
	}
	switch x := v.(type) {
	case nil:
		return nil, nil
	case bool:
		return x, nil
	case string:
		if !utf8.ValidString(x) {
			return nil, fmt.Errorf("string is not valid UTF-8")
		}
		return x, nil
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i, nil
		}
		f, err := x.Float64()
		if err != nil {
			return nil, fmt.Errorf("number %q: %w", x, err)
		}
		return normalizeFloat(f)
	case float64:
		return normalizeFloat(x)
	case float32:
		return normalizeFloat(float64(x))
	case int:
		return int64(x), nil
	case int8:
		return int64(x), nil
	case int16:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case int64:
		return x, nil
	case uint:
		return normalizeUint(uint64(x)), nil
	case uint8:
		return int64(x), nil
	case uint16:
		return int64(x), nil
	case uint32:
		return int64(x), nil
	case uint64:
		return normalizeUint(x), nil
	case []byte:
		return slices.Clone(x), nil
	case json.RawMessage:
		dec := json.NewDecoder(bytes.NewReader(x))
		dec.UseNumber()
		var out any
		if err := dec.Decode(&out); err != nil {
			return nil, fmt.Errorf("invalid JSON: %w", err)
		}
		return normalizeDepth(out, depth)
	case Item:
		return normalizeDepth(map[string]any(x), depth)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			if !utf8.ValidString(k) {
				return nil, fmt.Errorf("key %q is not valid UTF-8", k)
			}
			n, err := normalizeDepth(e, depth+1)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			out[k] = n
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			n, err := normalizeDepth(e, depth+1)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			out[i] = n
		}
		return out, nil
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Array:
		out := make([]any, rv.Len())
		for i := range out {
			n, err := normalizeDepth(rv.Index(i).Interface(), depth+1)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			out[i] = n
		}
		return out, nil
	case reflect.Map:
		if rv.Type().Key().Kind() == reflect.String {
			out := make(map[string]any, rv.Len())
			for it := rv.MapRange(); it.Next(); {
				n, err := normalizeDepth(it.Value().Interface(), depth+1)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", it.Key().String(), err)
				}
				out[it.Key().String()] = n
			}
			return out, nil
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("not a JSON value: %w", err)
	}
	return normalizeDepth(json.RawMessage(b), depth)
}

func normalizeFloat(f float64) (any, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("number %v is not valid JSON", f)
	}
	if f == math.Trunc(f) && f >= -(1<<63) && f < 1<<63 {
		return int64(f), nil
	}
	return f, nil
}

func normalizeUint(u uint64) any {
	if u <= math.MaxInt64 {
		return int64(u)
	}
	return float64(u)
}

// readJSON converts an Automerge value into the canonical JSON-like form of
// normalizeJSON. Text objects and scalar strings both read as strings,
// counters and unsigned integers as int64 (float64 beyond its range),
// timestamps as int64 milliseconds since the Unix epoch.
func readJSON(v *automerge.Value) (any, error) {
	switch v.Kind() {
	case automerge.KindMap:
		vals, err := v.Map().Values()
		if err != nil {
			return nil, err
		}
		out := make(map[string]any, len(vals))
		for k, e := range vals {
			if out[k], err = readJSON(e); err != nil {
				return nil, err
			}
		}
		return out, nil
	case automerge.KindList:
		vals, err := v.List().Values()
		if err != nil {
			return nil, err
		}
		out := make([]any, len(vals))
		for i, e := range vals {
			if out[i], err = readJSON(e); err != nil {
				return nil, err
			}
		}
		return out, nil
	case automerge.KindText:
		return v.Text().Get()
	case automerge.KindStr:
		return v.Str(), nil
	case automerge.KindInt64:
		return v.Int64(), nil
	case automerge.KindUint64:
		return normalizeUint(v.Uint64()), nil
	case automerge.KindFloat64:
		return v.Float64(), nil
	case automerge.KindCounter:
		return automerge.As[int64](v)
	case automerge.KindBool:
		return v.Bool(), nil
	case automerge.KindBytes:
		return v.Bytes(), nil
	case automerge.KindTime:
		return v.Time().UnixMilli(), nil
	}
	return nil, nil // null, void and kinds from future versions
}

// writeMapInPlace makes the Automerge map m, whose current content is old,
// hold nw, writing only the keys that differ; nested maps present on both
// sides are updated in place too. Concurrent edits of different keys then
// merge instead of one replacing the other.
func writeMapInPlace(m *automerge.Map, old, nw map[string]any) error {
	for k := range old {
		if _, ok := nw[k]; !ok {
			if err := m.Delete(k); err != nil {
				return err
			}
		}
	}
	for _, k := range sortedKeys(nw) {
		nv := nw[k]
		ov, had := old[k]
		if had && reflect.DeepEqual(ov, nv) {
			continue
		}
		om, oldIsMap := ov.(map[string]any)
		nm, newIsMap := nv.(map[string]any)
		if had && oldIsMap && newIsMap {
			child, err := m.Get(k)
			if err != nil {
				return err
			}
			if child.Kind() == automerge.KindMap {
				if err := writeMapInPlace(child.Map(), om, nm); err != nil {
					return err
				}
				continue
			}
		}
		if err := putJSON(m, k, nv); err != nil {
			return err
		}
	}
	return nil
}

// putJSON writes a canonical JSON value (see normalizeJSON) at key of m,
// creating nested maps and lists key by key in sorted order, so that the
// same value always makes the same operations.
func putJSON(m *automerge.Map, key string, v any) error {
	switch x := v.(type) {
	case map[string]any:
		nm := automerge.NewMap()
		if err := m.Set(key, nm); err != nil {
			return err
		}
		for _, k := range sortedKeys(x) {
			if err := putJSON(nm, k, x[k]); err != nil {
				return err
			}
		}
		return nil
	case []any:
		nl := automerge.NewList()
		if err := m.Set(key, nl); err != nil {
			return err
		}
		return appendJSON(nl, x)
	}
	return m.Set(key, v)
}

// appendJSON appends canonical JSON values to l, like putJSON.
func appendJSON(l *automerge.List, vs []any) error {
	for _, v := range vs {
		switch x := v.(type) {
		case map[string]any:
			nm := automerge.NewMap()
			if err := l.Append(nm); err != nil {
				return err
			}
			for _, k := range sortedKeys(x) {
				if err := putJSON(nm, k, x[k]); err != nil {
					return err
				}
			}
		case []any:
			nl := automerge.NewList()
			if err := l.Append(nl); err != nil {
				return err
			}
			if err := appendJSON(nl, x); err != nil {
				return err
			}
		default:
			if err := l.Append(v); err != nil {
				return err
			}
		}
	}
	return nil
}

// sortedKeys returns the keys of m in order, so that writes are deterministic.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
