package web_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"framesync/relay"
	"framesync/relay/relaytest"
	"framesync/relay/wire"
	"framesync/web"
)

func hubWithUI(t *testing.T) *relaytest.Hub {
	t.Helper()
	return relaytest.Start(t, relay.Options{UI: web.Handler(), Auth: &relay.AuthOptions{
		AdminUser: "root", AdminPassword: "root-password", Secret: []byte("0123456789abcdef0123456789abcdef"), PasswordCost: bcrypt.MinCost,
	}})
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func TestPages(t *testing.T) {
	h := hubWithUI(t)
	for _, tc := range []struct{ path, ctype, text string }{
		{"/rooms", "text/html", `src="/ui/index.js"`},
		{"/login", "text/html", `id="password"`},
		{"/ui/app.js", "javascript", "Authorization"},
		{"/ui/style.css", "text/css", "body"},
		{"/ui/dist/app.js", "javascript", "frame-counter"},
	} {
		resp, body := get(t, h.URL+tc.path)
		if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), tc.ctype) || !strings.Contains(body, tc.text) {
			t.Errorf("GET %s: %d %s %.80q", tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}
	if resp, _ := get(t, h.URL+"/"); resp.Request.URL.Path != "/rooms/default" {
		t.Errorf("GET / ends at %s, want the default room", resp.Request.URL.Path)
	}
	if resp, _ := get(t, h.URL+"/rooms"); !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Error("no content security policy on pages")
	}
	// The room page, from the UI handler (the hub routes /rooms/ to it):
	// Automerge's WebAssembly needs 'wasm-unsafe-eval', nothing else is
	// loosened.
	rec := httptest.NewRecorder()
	web.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/rooms/demo", nil))
	csp := rec.Header().Get("Content-Security-Policy")
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `src="/ui/dist/app.js"`) || !strings.Contains(rec.Body.String(), `id="frame-counter"`) {
		t.Errorf("GET /rooms/demo: %d %.80q", rec.Code, rec.Body.String())
	}
	for _, want := range []string{"default-src 'self'", "script-src 'self' 'wasm-unsafe-eval'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("room page CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "'unsafe-eval'") {
		t.Errorf("room page CSP %q allows inline scripts or eval", csp)
	}
	if resp, body := get(t, h.URL+"/ui/nothing.js"); resp.StatusCode != 404 {
		t.Errorf("missing asset: %d %s", resp.StatusCode, body)
	}
}

// TestLoginInBrowser logs in, sees a room and logs out in headless
// Chromium (playwright-core from web/e2e). make test installs both; without
// them the test is skipped unless FRAMESYNC_REQUIRE_BROWSER=1.
func TestLoginInBrowser(t *testing.T) {
	requireBrowser(t)

	h := hubWithUI(t)
	var res wire.LoginResponse
	h.JSON("POST", "/api/auth/login", wire.LoginRequest{Username: "root", Password: "root-password"}, &res)
	root := []string{"Authorization", "Bearer " + res.Token}
	if code, body := h.Do("POST", "/api/users", wire.LoginRequest{Username: "ann", Password: "ann-password"}, root...); code != 201 {
		t.Fatalf("create ann: %d %s", code, body)
	}
	if code, body := h.Do("POST", "/api/rooms", wire.CreateRoomRequest{Name: "lab"}, root...); code != 201 {
		t.Fatalf("create lab: %d %s", code, body)
	}
	acl := wire.RoomACL{Roles: map[string]string{"root": "admin", "ann": "reader"}}
	if code, body := h.Do("PUT", "/api/rooms/lab/acl", acl, root...); code != 200 {
		t.Fatalf("acl: %d %s", code, body)
	}
	cmd := exec.Command("node", filepath.Join("e2e", "login.mjs"), h.URL, "ann", "ann-password", "lab")
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok") {
		t.Fatalf("browser: %v\n%s", err, out)
	}
}
