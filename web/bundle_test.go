package web_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestBundleUpToDate rebuilds the bundle from web/src into a temporary
// directory and compares it with the committed static/dist: a change to the
// sources without `make web` fails here. Needs node and the npm packages
// (make test installs them; skipped without them unless
// FRAMESYNC_REQUIRE_BROWSER=1).
func TestBundleUpToDate(t *testing.T) {
	requireNode(t)
	out := t.TempDir()
	cmd := exec.Command("node", "build.mjs", "--outdir", out)
	cmd.WaitDelay = 5 * time.Second
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("node build.mjs: %v\n%s", err, b)
	}
	built, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadDir(filepath.Join("static", "dist"))
	if err != nil {
		t.Fatal(err)
	}
	if len(built) != len(committed) {
		t.Errorf("static/dist has %d files, the sources give %d: run make web", len(committed), len(built))
	}
	for _, e := range built {
		want, _ := os.ReadFile(filepath.Join(out, e.Name()))
		got, err := os.ReadFile(filepath.Join("static", "dist", e.Name()))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("static/dist/%s is out of date with web/src (%v): run make web and commit the result", e.Name(), err)
		}
	}
}

// requireNode skips (or, with FRAMESYNC_REQUIRE_BROWSER=1, fails) a test
// that needs node and web/node_modules.
func requireNode(t *testing.T) {
	t.Helper()
	_, err := exec.LookPath("node")
	need(t, "node", err)
	_, err = os.Stat(filepath.Join("node_modules", "esbuild"))
	need(t, "npm packages (npm ci in web/)", err)
}

// requireBrowser is requireNode for a test that drives Chromium with
// playwright-core.
func requireBrowser(t *testing.T) {
	t.Helper()
	requireNode(t)
	_, err := os.Stat(chromiumPath())
	need(t, "chromium", err)
	_, err = os.Stat(filepath.Join("node_modules", "playwright-core"))
	need(t, "playwright-core (npm ci in web/)", err)
}

// need skips t when err says something the test needs is missing, or
// fails it with FRAMESYNC_REQUIRE_BROWSER=1 (make test sets it).
func need(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("FRAMESYNC_REQUIRE_BROWSER") == "1" {
		t.Fatalf("%s: %v", what, err)
	}
	t.Skipf("%s: %v (make test installs it)", what, err)
}
