// Package dashboard serves the reporter's web dashboard: static HTML, CSS
// and JavaScript (with uPlot vendored from npm) that call the API with the
// API key the user logs in with.
package dashboard

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Handler serves the dashboard at "/" and its files under "/static/".
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time.
	}
	files := http.FileServer(http.FS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The page holds an API key in sessionStorage: no framing, no
		// foreign scripts, no referrer leaking report URLs.
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Referrer-Policy", "no-referrer")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		switch {
		case r.URL.Path == "/":
			w.Header().Set("Cache-Control", "no-cache")
			http.ServeFileFS(w, r, sub, "index.html")
		case len(r.URL.Path) > len("/static/") && r.URL.Path[:len("/static/")] == "/static/":
			http.StripPrefix("/static", files).ServeHTTP(w, r)
		default:
			http.NotFound(w, r)
		}
	})
}
