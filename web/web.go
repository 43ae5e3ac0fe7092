// Package web is the hub's browser UI, served from assets embedded in the
// binary: the rooms the visitor can see and, on hubs with access control,
// a login page. The hub mounts Handler (relay.Options.UI); the pages talk
// to the hub's HTTP API with the token kept in the browser's localStorage.
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// csp is the pages' Content-Security-Policy.
const csp = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; frame-ancestors 'none'"

// Handler serves the UI: GET / (redirects to the default room),
// GET /rooms (the room list), GET /rooms/{name} (a room in 3D), GET /login,
// and the assets under /ui/.
//
// Pages load scripts only from the hub; 'wasm-unsafe-eval' lets the client
// compile Automerge's WebAssembly (it allows WebAssembly, not eval).
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServerFS(sub)
	mux := http.NewServeMux()
	page := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "no-cache")
			w.Header().Set("Content-Security-Policy", csp)
			w.Header().Set("X-Content-Type-Options", "nosniff")
			http.ServeFileFS(w, r, sub, name)
		}
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/rooms/default", http.StatusFound)
	})
	mux.HandleFunc("GET /rooms", page("index.html"))
	mux.HandleFunc("GET /login", page("login.html"))
	mux.HandleFunc("GET /rooms/{name}", page("room.html")) // the page reads the name from its URL
	mux.Handle("GET /ui/", http.StripPrefix("/ui/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		files.ServeHTTP(w, r)
	})))
	return mux
}
