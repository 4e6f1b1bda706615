//go:build unix

package engine_test

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/builtin"
	"github.com/pyoco/pyoco/engine/memstore"
	noopmetric "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	nooptrace "go.opentelemetry.io/otel/trace/noop"
)

// benchTasks is the size of the benchmark DAGs.
const benchTasks = 1000

// fanFlow is start >> (998 tasks in parallel) >> end, all noop.
func fanFlow(n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version: 1\nflow: {name: fan}\ntasks:\n  start: {use: noop}\n")
	deps := make([]string, 0, n-2)
	for i := range n - 2 {
		name := fmt.Sprintf("t%d", i)
		deps = append(deps, name)
		fmt.Fprintf(&b, "  %s: {use: noop, depends_on: [start]}\n", name)
	}
	fmt.Fprintf(&b, "  end: {use: noop, depends_on: [%s]}\n", strings.Join(deps, ", "))
	return b.String()
}

// chainFlow is t0 >> t1 >> … >> t(n-1), all noop.
func chainFlow(n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version: 1\nflow: {name: chain}\ntasks:\n  t0: {use: noop}\n")
	for i := 1; i < n; i++ {
		fmt.Fprintf(&b, "  t%d: {use: noop, depends_on: [t%d]}\n", i, i-1)
	}
	return b.String()
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// discardExporter drops finished spans (after the batch processor has
// handled them, as an OTLP exporter would receive them).
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// BenchmarkExecute measures the engine's overhead per no-op task: submit and
// execute a 1,000-task DAG on the memory store with tracing (SDK tracer
// provider, batch processor, discarding exporter) and metrics (SDK meter
// provider, manual reader) on. It reports ns/task (wall) and cpu-ns/task.
//
//	go test -run '^$' -bench BenchmarkExecute -benchtime 40x -count 5 ./engine/
func BenchmarkExecute(b *testing.B) {
	benchExecute(b, true)
}

// BenchmarkExecuteNoTelemetry is BenchmarkExecute with no-op tracer and
// meter providers: the scheduler and store alone.
func BenchmarkExecuteNoTelemetry(b *testing.B) {
	benchExecute(b, false)
}

func benchExecute(b *testing.B, telemetry bool) {
	for _, shape := range []struct {
		name string
		src  string
	}{
		{"fan-out-fan-in", fanFlow(benchTasks)},
		{"chain", chainFlow(benchTasks)},
	} {
		b.Run(shape.name, func(b *testing.B) {
			cfg := &engine.Config{WorkerID: "bench", TracerProvider: nooptrace.NewTracerProvider(), MeterProvider: noopmetric.NewMeterProvider()}
			if telemetry {
				tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discardExporter{}), sdktrace.WithIDGenerator(engine.IDGenerator{}))
				reader := sdkmetric.NewManualReader()
				mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
				b.Cleanup(func() {
					_ = tp.Shutdown(context.Background())
					_ = mp.Shutdown(context.Background())
				})
				cfg.TracerProvider, cfg.MeterProvider = tp, mp
			}
			reg := engine.NewRegistry()
			if err := builtin.Register(reg); err != nil {
				b.Fatal(err)
			}
			flow, err := engine.LoadFlow(shape.name+".yaml", []byte(shape.src), reg)
			if err != nil {
				b.Fatal(err)
			}
			if len(flow.Order) != benchTasks {
				b.Fatalf("flow has %d tasks", len(flow.Order))
			}
			eng, err := engine.New(memstore.New(), reg, cfg)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			cpu0 := cpuTime()
			b.ResetTimer()
			for b.Loop() {
				run, err := eng.Submit(ctx, &engine.SubmitParams{Flow: flow})
				if err != nil {
					b.Fatal(err)
				}
				final, err := eng.Execute(ctx, &engine.ExecuteParams{RunID: run.ID})
				if err != nil {
					b.Fatal(err)
				}
				if final.Status != engine.RunCompleted {
					b.Fatalf("run %s: %s", final.Status, final.Error)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchTasks), "ns/task")
			// CPU time (all threads, GC included) per task: less sensitive
			// than wall time to other processes sharing the machine.
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N*benchTasks), "cpu-ns/task")
		})
	}
}
