package ui

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
)

//go:embed static
var static embed.FS

// Prefix is the path the viewer is served under.
const Prefix = "/ui"

// TraceIDPlaceholder is replaced by a run's trace id in [Config.TraceURL].
const TraceIDPlaceholder = "{trace_id}"

// Config tunes the viewer. The zero value shows trace ids without a link.
type Config struct {
	// TraceURL is the template of a link to a run's trace, with
	// {trace_id} where the id goes, e.g.
	// "http://localhost:16686/trace/{trace_id}" for Jaeger or
	// "http://grafana:3000/explore?left=...{trace_id}..." for Tempo
	// (PYOCO_TRACE_URL). It must be an http or https URL. Empty: no link.
	TraceURL string
}

// clientConfig is GET /ui/config.json, read by the page at start.
type clientConfig struct {
	TraceURL string `json:"trace_url"`
}

// Handler serves the viewer: /ui redirects to /ui/, /ui/ is the page,
// /ui/config.json its settings, the rest its static files. Give it the
// requests whose path is /ui or starts with /ui/ (see [Match]). It returns
// an error, naming the setting, for a bad TraceURL.
func Handler(cfg *Config) (http.Handler, error) {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.TraceURL != "" {
		if err := checkTraceURL(c.TraceURL); err != nil {
			return nil, fmt.Errorf("trace URL %q: %w", c.TraceURL, err)
		}
	}
	conf, err := json.Marshal(clientConfig{TraceURL: c.TraceURL})
	if err != nil {
		return nil, err
	}
	sub, err := fs.Sub(static, "static")
	if err != nil {
		return nil, err
	}
	files := http.StripPrefix(Prefix+"/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.Set("Cache-Control", "no-cache")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		switch r.URL.Path {
		case Prefix:
			http.Redirect(w, r, Prefix+"/", http.StatusMovedPermanently)
			return
		case Prefix + "/config.json":
			h.Set("Content-Type", "application/json")
			_, _ = w.Write(conf)
			return
		}
		files.ServeHTTP(w, r)
	}), nil
}

// Match reports whether r is for the viewer (its path is /ui or under
// /ui/).
func Match(r *http.Request) bool {
	return r.URL.Path == Prefix || strings.HasPrefix(r.URL.Path, Prefix+"/")
}

func checkTraceURL(s string) error {
	if !strings.Contains(s, TraceIDPlaceholder) {
		return errors.New("want " + TraceIDPlaceholder + " where the trace id goes")
	}
	u, err := url.Parse(strings.ReplaceAll(s, TraceIDPlaceholder, "0"))
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("want an http:// or https:// URL")
	}
	return nil
}
