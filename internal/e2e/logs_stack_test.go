//go:build linux

package e2e_test

import (
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/protobuf/proto"
)

// logsReceiver is an OTLP/HTTP logs receiver in the test process (the
// Jaeger binary's collector has no logs pipeline): it decodes each export
// with the OTLP protobuf collector service's messages, as a collector does.
type logsReceiver struct {
	url string

	mu      sync.Mutex
	records []logRecord
	bad     []string
}

// logRecord is the part of a received log record the test checks.
type logRecord struct {
	service, body, severity string
	traceID, spanID         string
	attrs                   map[string]string
}

func startLogsReceiver(t *testing.T) *logsReceiver {
	t.Helper()
	lr := &logsReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		req := &collogspb.ExportLogsServiceRequest{}
		if err == nil {
			err = proto.Unmarshal(body, req)
		}
		lr.mu.Lock()
		defer lr.mu.Unlock()
		if err != nil || r.URL.Path != "/v1/logs" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			lr.bad = append(lr.bad, r.URL.Path+" "+r.Header.Get("Content-Type"))
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		for _, rl := range req.GetResourceLogs() {
			svc := ""
			for _, kv := range rl.GetResource().GetAttributes() {
				if kv.GetKey() == "service.name" {
					svc = kv.GetValue().GetStringValue()
				}
			}
			for _, sl := range rl.GetScopeLogs() {
				for _, rec := range sl.GetLogRecords() {
					attrs := map[string]string{}
					for _, kv := range rec.GetAttributes() {
						attrs[kv.GetKey()] = kv.GetValue().GetStringValue()
					}
					lr.records = append(lr.records, logRecord{service: svc, body: rec.GetBody().GetStringValue(),
						severity: rec.GetSeverityText(), traceID: hex.EncodeToString(rec.GetTraceId()),
						spanID: hex.EncodeToString(rec.GetSpanId()), attrs: attrs})
				}
			}
		}
		resp, _ := proto.Marshal(&collogspb.ExportLogsServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(resp)
	}))
	t.Cleanup(srv.Close)
	lr.url = srv.URL
	return lr
}

// received returns the records of run id, and any bad requests.
func (lr *logsReceiver) received(runID string) (recs []logRecord, bad []string) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	for _, r := range lr.records {
		if r.attrs["pyoco.run.id"] == runID {
			recs = append(recs, r)
		}
	}
	return recs, append([]string(nil), lr.bad...)
}
