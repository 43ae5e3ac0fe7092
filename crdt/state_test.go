package crdt_test

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"

	"framesync"
	"framesync/crdt"
)

func newState(t testing.TB) *crdt.State {
	t.Helper()
	s, err := crdt.NewState(&crdt.Options{Now: fixedClock()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// item decodes a JSON object the way a hub would (numbers as json.Number).
func item(t testing.TB, js string) crdt.Item {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(js), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func diffSummary(ds []crdt.ItemDiff) []string {
	var out []string
	for _, d := range ds {
		kind := "change"
		switch {
		case d.Old == nil:
			kind = "insert"
		case d.New == nil:
			kind = "remove"
		}
		out = append(out, d.Collection+"/"+d.ID+":"+kind)
	}
	return out
}

func TestStateUpdate(t *testing.T) {
	s := newState(t)
	ds, err := s.Update("markers", crdt.Update{Insert: []crdt.Item{
		item(t, `{"id": "a", "pos": [1, 2.5, -3], "color": "red", "meta": {"n": 1, "tags": ["x"]}}`),
		item(t, `{"id": "b", "big": 1e300, "ok": true, "none": null}`),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got := diffSummary(ds); !slices.Equal(got, []string{"markers/a:insert", "markers/b:insert"}) {
		t.Fatalf("diffs %v", got)
	}
	a, err := s.Item("markers", "a")
	if err != nil {
		t.Fatal(err)
	}
	want := crdt.Item{"id": "a", "pos": []any{int64(1), 2.5, int64(-3)}, "color": "red", "meta": map[string]any{"n": int64(1), "tags": []any{"x"}}}
	if !reflect.DeepEqual(a, want) {
		t.Fatalf("item a = %#v\nwant %#v", a, want)
	}
	if b, _ := s.Item("markers", "b"); b["big"] != 1e300 || b["ok"] != true || b["none"] != nil {
		t.Fatalf("item b = %#v", b)
	}

	// Remove before insert; insert replaces; removing a missing ID is ignored;
	// inserting an identical item changes nothing.
	ds, err = s.Update("markers", crdt.Update{
		Remove: []string{"b", "zzz", "a"},
		Insert: []crdt.Item{item(t, `{"id": "a", "color": "blue", "meta": {"n": 2, "tags": ["x"]}}`), item(t, `{"id": "c"}`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := diffSummary(ds); !slices.Equal(got, []string{"markers/a:change", "markers/b:remove", "markers/c:insert"}) {
		t.Fatalf("diffs %v", got)
	}
	if ds[0].Old["color"] != "red" || ds[0].New["color"] != "blue" {
		t.Fatalf("diff of a: %+v", ds[0])
	}
	a, _ = s.Item("markers", "a")
	if !reflect.DeepEqual(a, crdt.Item{"id": "a", "color": "blue", "meta": map[string]any{"n": int64(2), "tags": []any{"x"}}}) {
		t.Fatalf("replaced item a = %#v", a)
	}
	heads := s.Heads()
	if ds, err := s.Update("markers", crdt.Update{Insert: []crdt.Item{item(t, `{"id": "c"}`)}}); err != nil || len(ds) != 0 || !s.Heads().Equal(heads) {
		t.Fatalf("no-op update: %v, %v, heads moved %v", ds, err, !s.Heads().Equal(heads))
	}

	// Another collection is independent; reset empties one collection.
	if _, err := s.Update("notes", crdt.Update{Insert: []crdt.Item{{"id": "n1", "text": "hello"}}}); err != nil {
		t.Fatal(err)
	}
	ds, err = s.Update("markers", crdt.Update{Reset: true, Insert: []crdt.Item{{"id": "c", "x": 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := diffSummary(ds); !slices.Equal(got, []string{"markers/a:remove", "markers/c:change"}) {
		t.Fatalf("reset diffs %v", got)
	}
	names, _ := s.Collections()
	if !slices.Equal(names, []string{"markers", "notes"}) {
		t.Fatalf("collections %v", names)
	}
	items, _ := s.Items("markers")
	if len(items) != 1 || items[0].ID() != "c" || items[0]["x"] != int64(1) {
		t.Fatalf("items after reset %v", items)
	}
	if _, err := s.Item("markers", "a"); framesync.KindOf(err) != framesync.NotFound {
		t.Fatalf("removed item: %v", err)
	}

	// Bad input writes nothing.
	heads = s.Heads()
	for name, u := range map[string]crdt.Update{
		"no id":     {Insert: []crdt.Item{{"x": 1}}},
		"number id": {Insert: []crdt.Item{{"id": 5}}},
		"dup id":    {Insert: []crdt.Item{{"id": "q"}, {"id": "q"}}},
		"not json":  {Insert: []crdt.Item{{"id": "q", "f": func() {}}}},
	} {
		t.Run(name, func(t *testing.T) {
			wantKind(t, second(s.Update("markers", u)), framesync.BadInput)
		})
	}
	wantKind(t, second(s.Update("a/b", crdt.Update{})), framesync.BadInput)
	wantKind(t, second(s.Update("", crdt.Update{})), framesync.BadInput)
	if !s.Heads().Equal(heads) {
		t.Fatal("bad updates changed the document")
	}
}

func TestStateFields(t *testing.T) {
	s := newState(t)
	if sel, err := s.Selection(); err != nil || len(sel) != 0 {
		t.Fatalf("initial selection %v, %v", sel, err)
	}
	if err := s.SetSelection([]int64{3, 1, 4}); err != nil {
		t.Fatal(err)
	}
	if sel, _ := s.Selection(); !slices.Equal(sel, []int64{3, 1, 4}) {
		t.Fatalf("selection %v", sel)
	}
	if err := s.SetStep(42); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Step(); st != 42 {
		t.Fatalf("step %d", st)
	}
	cam := map[string]any{"position": []any{0.5, 1, 2}, "fov": 60, "up": map[string]any{"y": 1}}
	if err := s.SetCamera(cam); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Camera()
	if !reflect.DeepEqual(got, map[string]any{"position": []any{0.5, int64(1), int64(2)}, "fov": int64(60), "up": map[string]any{"y": int64(1)}}) {
		t.Fatalf("camera %#v", got)
	}
	if err := s.SetSettings(map[string]any{"theme": "dark", "fps": 30}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSettings(map[string]any{"theme": "light"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Settings(); !reflect.DeepEqual(got, map[string]any{"theme": "light"}) {
		t.Fatalf("settings %#v", got)
	}
	if err := s.SetBookmark("f1", "start"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetBookmark("f2", "end"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteBookmark("f1"); err != nil {
		t.Fatal(err)
	}
	if b, _ := s.Bookmarks(); !reflect.DeepEqual(b, map[string]string{"f2": "end"}) {
		t.Fatalf("bookmarks %v", b)
	}

	// Save and load round trip.
	l, err := crdt.LoadState(s.Save(), nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := l.Diff(s.Heads(), l.Heads())
	if err != nil || !d.Empty() {
		t.Fatalf("loaded state differs: %+v, %v", d, err)
	}
	if sel, _ := l.Selection(); !slices.Equal(sel, []int64{3, 1, 4}) {
		t.Fatalf("loaded selection %v", sel)
	}
}

func TestStateDiffFields(t *testing.T) {
	s := newState(t)
	from := s.Heads()
	if err := s.SetSelection([]int64{7}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetStep(3); err != nil {
		t.Fatal(err)
	}
	if err := s.SetBookmark("f9", "nice"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update("c", crdt.Update{Insert: []crdt.Item{{"id": "i"}}}); err != nil {
		t.Fatal(err)
	}
	d, err := s.Diff(from, s.Heads())
	if err != nil {
		t.Fatal(err)
	}
	var fields []string
	for _, f := range d.Fields {
		fields = append(fields, f.Field)
	}
	if !slices.Equal(fields, []string{"selection", "step"}) {
		t.Fatalf("fields %v", fields)
	}
	if !reflect.DeepEqual(d.Fields[0].New, []any{int64(7)}) || d.Fields[1].Old != int64(0) || d.Fields[1].New != int64(3) {
		t.Fatalf("field diffs %+v", d.Fields)
	}
	if len(d.Bookmarks) != 1 || d.Bookmarks[0].FrameID != "f9" || d.Bookmarks[0].Old != nil || *d.Bookmarks[0].New != "nice" {
		t.Fatalf("bookmark diffs %+v", d.Bookmarks)
	}
	if got := diffSummary(d.Items); !slices.Equal(got, []string{"c/i:insert"}) {
		t.Fatalf("item diffs %v", got)
	}
}
