package web_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runScript runs the browser script e2e/<script> with args and answers
// the Go-side steps it asks for: a line "go <name> <JSON array of
// arguments>" on its standard output is passed to do, and "ok" or
// "fail <error>" written back on its standard input (e2e/harness.mjs is the
// other end). The test fails unless the script prints PASS and exits 0.
func runScript(ctx context.Context, t *testing.T, script string, args []string, do func(name string, args []json.RawMessage) error) {
	t.Helper()
	cmd := exec.CommandContext(ctx, "node", append([]string{filepath.Join("e2e", script)}, args...)...)
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromiumPath())
	cmd.WaitDelay = 5 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	passed := false
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, isStep := strings.CutPrefix(line, "go ")
		switch {
		case line == "PASS":
			passed = true
		case isStep:
			name, raw, _ := strings.Cut(rest, " ")
			var a []json.RawMessage
			reply := "ok"
			err := json.Unmarshal([]byte(raw), &a)
			if err == nil {
				err = do(name, a)
			}
			if err != nil {
				reply = "fail " + strings.ReplaceAll(err.Error(), "\n", " ")
				t.Logf("go %s: %v", name, err)
			}
			io.WriteString(stdin, reply+"\n")
		default:
			t.Log("node: " + line)
		}
	}
	if err := cmd.Wait(); err != nil || !passed {
		t.Fatalf("e2e/%s %s: %v\n%s", script, strings.Join(args, " "), err, stderr.String())
	}
}

func chromiumPath() string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}
