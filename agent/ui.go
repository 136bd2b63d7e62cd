package agent

import (
	"embed"
	"io/fs"
	"net/http"
)

// The live dashboard at / of the HTTP address: files embedded in the
// binary, no external assets; the page polls the API.
//
//go:embed ui
var uiFiles embed.FS

func (a *Agent) uiRoutes(mux *http.ServeMux) {
	sub, err := fs.Sub(uiFiles, "ui")
	if err != nil {
		panic(err) // the embedded directory is there at build time
	}
	files := http.FileServer(http.FS(sub))
	mux.Handle("GET /ui/", http.StripPrefix("/ui/", files))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		b, err := fs.ReadFile(sub, "index.html")
		if err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'self'")
		_, _ = w.Write(b)
	})
}
