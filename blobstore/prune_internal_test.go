package blobstore

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"framesync"
)

// TestDirPruneRace plays the two ways a Put can meet a Prune of its blob.
func TestDirPruneRace(t *testing.T) {
	ctx := context.Background()
	data := []byte("contested")
	h := framesync.Sum(data)
	setup := func(t *testing.T) *Dir {
		d, err := OpenDir(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := PutBytes(ctx, d, data); err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(-2 * time.Hour)
		if err := os.Chtimes(d.path(h), old, old); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			entries, _ := os.ReadDir(d.tmp)
			for _, e := range entries {
				t.Errorf("left in temp directory: %s", e.Name())
			}
		})
		return d
	}
	cutoff := time.Now().Add(-time.Hour)

	t.Run("PutRefreshedBeforeMoveAside", func(t *testing.T) {
		// The Put's Chtimes landed just before Prune moved the file: the
		// file Prune holds is young again, so it goes back.
		d := setup(t)
		d.afterPruneRename = func() {
			entries, err := os.ReadDir(d.tmp)
			if err != nil || len(entries) != 1 {
				t.Fatalf("temp directory: %v, %v", entries, err)
			}
			now := time.Now()
			if err := os.Chtimes(d.tmp+string(os.PathSeparator)+entries[0].Name(), now, now); err != nil {
				t.Fatal(err)
			}
		}
		deleted, err := d.Prune(ctx, h, cutoff)
		if deleted || err != nil {
			t.Fatalf("Prune = %v, %v; want false, nil", deleted, err)
		}
		if b, err := ReadAll(ctx, d, h); err != nil || string(b) != string(data) {
			t.Fatalf("ReadAll after Prune = %q, %v", b, err)
		}
	})

	t.Run("PutWhileMovedAside", func(t *testing.T) {
		// The Put came while the blob was aside: it stores its own copy,
		// which stays; the old one goes.
		d := setup(t)
		d.afterPruneRename = func() {
			if _, err := PutBytes(ctx, d, data); err != nil {
				t.Fatal(err)
			}
		}
		deleted, err := d.Prune(ctx, h, cutoff)
		if !deleted || err != nil {
			t.Fatalf("Prune = %v, %v; want true, nil", deleted, err)
		}
		info, err := d.Stat(ctx, h)
		if err != nil || !info.ModTime.After(cutoff) {
			t.Fatalf("Stat after Prune = %+v, %v; want the new copy", info, err)
		}
	})

	t.Run("RefreshedAndReplaced", func(t *testing.T) {
		// Both: refreshed before the move and a new copy stored while
		// aside. Prune keeps the new copy and drops its own.
		d := setup(t)
		d.afterPruneRename = func() {
			entries, _ := os.ReadDir(d.tmp)
			now := time.Now()
			for _, e := range entries {
				os.Chtimes(d.tmp+string(os.PathSeparator)+e.Name(), now, now)
			}
			if _, err := PutBytes(ctx, d, data); err != nil {
				t.Fatal(err)
			}
		}
		deleted, err := d.Prune(ctx, h, cutoff)
		if deleted || err != nil {
			t.Fatalf("Prune = %v, %v; want false, nil", deleted, err)
		}
		if _, err := d.Stat(ctx, h); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("Missing", func(t *testing.T) {
		d := setup(t)
		if err := d.Delete(ctx, h); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Prune(ctx, h, cutoff); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Prune of a missing blob: %v; want ErrNotFound", err)
		}
	})
}
