package telemetry_test

import (
	"context"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/builtin"
	"github.com/pyoco/pyoco/engine/memstore"
	"github.com/pyoco/pyoco/telemetry"
)

// logsCollector gathers the OTLP log exports a test receiver gets.
type logsCollector struct {
	collogspb.UnimplementedLogsServiceServer
	mu    sync.Mutex
	paths []string
	reqs  []*collogspb.ExportLogsServiceRequest
}

func (c *logsCollector) add(path string, r *collogspb.ExportLogsServiceRequest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.paths = append(c.paths, path)
	c.reqs = append(c.reqs, r)
}

func (c *logsCollector) Export(_ context.Context, r *collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
	c.add("grpc", r)
	return &collogspb.ExportLogsServiceResponse{}, nil
}

// records flattens the received exports into their records, each with the
// service.name of its resource.
func (c *logsCollector) records() (recs []*logspb.LogRecord, services []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.reqs {
		for _, rl := range r.GetResourceLogs() {
			svc := ""
			for _, kv := range rl.GetResource().GetAttributes() {
				if kv.GetKey() == "service.name" {
					svc = kv.GetValue().GetStringValue()
				}
			}
			for _, sl := range rl.GetScopeLogs() {
				for _, lr := range sl.GetLogRecords() {
					recs = append(recs, lr)
					services = append(services, svc)
				}
			}
		}
	}
	return recs, services
}

func newLogsHTTPCollector(t *testing.T) (string, *logsCollector) {
	c := &logsCollector{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		req := &collogspb.ExportLogsServiceRequest{}
		if err == nil {
			err = proto.Unmarshal(body, req)
		}
		if err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		c.add(r.URL.Path, req)
		resp, _ := proto.Marshal(&collogspb.ExportLogsServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(resp)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, c
}

func newLogsGRPCCollector(t *testing.T) (string, *logsCollector) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	c := &logsCollector{}
	srv := grpc.NewServer()
	collogspb.RegisterLogsServiceServer(srv, c)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		require.NoError(t, <-done)
	})
	return "http://" + lis.Addr().String(), c
}

// TestTaskLogRecords: with a logs endpoint, every task log entry is also
// exported as an OTLP log record with the trace and span ids of its
// attempt, a severity, the run's attributes and the process's resource.
func TestTaskLogRecords(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		grpc     bool
		env      func(url string) map[string]string
		wantPath string
	}{
		{name: "http", env: func(u string) map[string]string { return map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": u} }, wantPath: "/v1/logs"},
		{name: "http logs endpoint", env: func(u string) map[string]string {
			return map[string]string{"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": u + "/custom/logs"}
		}, wantPath: "/custom/logs"},
		{name: "grpc", grpc: true, env: func(u string) map[string]string {
			return map[string]string{"OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": u}
		}, wantPath: "grpc"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var (
				url string
				col *logsCollector
			)
			if tt.grpc {
				url, col = newLogsGRPCCollector(t)
			} else {
				url, col = newLogsHTTPCollector(t)
			}
			env := tt.env(url)
			env["OTEL_SERVICE_NAME"] = "pyoco-logs"
			env["OTEL_TRACES_EXPORTER"] = "none" // ids are still made
			b := setup(t, env)
			require.NotNil(t, b.providers.LoggerProvider)

			store := memstore.New()
			reg := engine.NewRegistry()
			require.NoError(t, builtin.Register(reg))
			eng, err := engine.New(store, reg, &engine.Config{TracerProvider: b.providers.TracerProvider,
				LoggerProvider: b.providers.Logs(), WorkerID: "w-logs"})
			require.NoError(t, err)
			f, err := engine.LoadFlow("logs.yaml", []byte("version: 1\nflow: {name: logs}\ntasks:\n  hello: {use: log, inputs: {message: hi there}}\n  sh: {use: shell, inputs: {cmd: \"echo out; echo err >&2\"}}\n"), reg)
			require.NoError(t, err)
			run, err := eng.Submit(t.Context(), &engine.SubmitParams{Flow: f})
			require.NoError(t, err)
			final, err := eng.Execute(t.Context(), &engine.ExecuteParams{RunID: run.ID})
			require.NoError(t, err)
			require.Equal(t, engine.RunCompleted, final.Status, final.Error)
			entries, err := store.LogList(t.Context(), &engine.LogListParams{RunID: run.ID})
			require.NoError(t, err)
			require.NotEmpty(t, entries)

			b.shutdown(t) // flushes the batch
			recs, services := col.records()
			require.Len(t, recs, len(entries), "one record per stored entry")
			for _, p := range col.paths {
				require.Equal(t, tt.wantPath, p)
			}
			bySeq := map[int64]*logspb.LogRecord{}
			for i, r := range recs {
				require.Equal(t, "pyoco-logs", services[i], "resource attributes")
				attrs := map[string]string{}
				var seq int64
				for _, kv := range r.GetAttributes() {
					if kv.GetKey() == "pyoco.log.seq" {
						seq = kv.GetValue().GetIntValue()
					} else {
						attrs[kv.GetKey()] = kv.GetValue().GetStringValue()
					}
				}
				require.Equal(t, run.ID, attrs["pyoco.run.id"])
				require.Equal(t, "logs", attrs["pyoco.flow.name"])
				bySeq[seq] = r
			}
			for _, e := range entries {
				r := bySeq[e.Seq]
				require.NotNil(t, r, "entry %d", e.Seq)
				require.Equal(t, e.Text, r.GetBody().GetStringValue())
				require.Equal(t, e.TraceID, hex.EncodeToString(r.GetTraceId()), "entry %d", e.Seq)
				require.Equal(t, e.SpanID, hex.EncodeToString(r.GetSpanId()), "entry %d: the attempt's span", e.Seq)
				require.NotEmpty(t, e.SpanID)
				require.Equal(t, final.Tasks[e.Task].Attempts[0].SpanID, e.SpanID)
				require.Equal(t, e.Level, r.GetSeverityText())
				require.Equal(t, logspb.SeverityNumber_SEVERITY_NUMBER_INFO, r.GetSeverityNumber())
				require.Equal(t, e.Timestamp.UnixNano(), int64(r.GetTimeUnixNano()))
			}
		})
	}
}

// TestTaskLogRecordsOff: no logs endpoint, or OTEL_LOGS_EXPORTER=none, makes
// no logger provider; a bad exporter name is an error naming the variable.
func TestTaskLogRecordsOff(t *testing.T) {
	t.Parallel()
	require.Nil(t, setup(t, map[string]string{}).providers.Logs())
	require.Nil(t, setup(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_LOGS_EXPORTER": "none",
		"OTEL_TRACES_EXPORTER": "none"}).providers.Logs())
	_, err := telemetry.Setup(t.Context(), telemetry.Config{Env: func(k string) string {
		return map[string]string{"OTEL_LOGS_EXPORTER": "loki"}[k]
	}})
	require.ErrorContains(t, err, "OTEL_LOGS_EXPORTER")
}
