package api_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/pyoco/pyoco/api"
	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/memstore"
)

// FuzzRunsQuery feeds arbitrary query strings to GET /runs (and the logs
// endpoint): the answer is always 200 or a JSON 400, never a panic or 500.
func FuzzRunsQuery(f *testing.F) {
	for _, s := range []string{"", "status=FAILED", "status=failed,running&status=PENDING", "limit=0", "limit=501",
		"limit=abc", "cursor=garbage", "flow=x&tag=y", "status=%ff", "limit=1e3", "cursor=" + "MTIz", "tail=5&after=3", "follow=maybe", ";;&&=="} {
		f.Add(s)
	}
	store := memstore.New()
	eng, err := engine.New(store, engine.NewRegistry(), nil)
	if err != nil {
		f.Fatal(err)
	}
	flow, err := engine.LoadFlow("", []byte("version: 1\nflow: {name: fz}\ntasks:\n  a: {use: noop}\n"), nil)
	if err != nil {
		f.Fatal(err)
	}
	run, err := eng.Submit(f.Context(), &engine.SubmitParams{Flow: flow, Tags: []string{"t"}})
	if err != nil {
		f.Fatal(err)
	}
	srv, err := api.New(eng, nil)
	if err != nil {
		f.Fatal(err)
	}
	h := srv.Handler()
	f.Fuzz(func(t *testing.T, q string) {
		for _, path := range []string{"/runs?", "/runs/" + run.ID + "/logs?"} {
			req := httptest.NewRequest("GET", "/", nil)
			req.URL.Path = path[:len(path)-1]
			req.URL.RawQuery = q
			if path != "/runs?" && req.URL.Query().Get("follow") != "" {
				continue // a stream on a PENDING run would not end
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			switch rec.Code {
			case http.StatusOK:
			case http.StatusBadRequest:
				var body api.ErrorBody
				if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error.Code != api.CodeBadRequest || body.Error.Message == "" {
					t.Fatalf("%s%s: 400 without the error shape: %s", path, q, rec.Body)
				}
			default:
				t.Fatalf("%s%s: status %d: %s", path, q, rec.Code, rec.Body)
			}
		}
	})
}
