// Command queue measures pyoco's Redis queue against Asynq on one local
// Redis: runs/s draining a pre-filled queue of single-noop-task runs with 1
// and 2 workers (each its own engine, store and Redis client, concurrency
// 16), submit→COMPLETED latency on an idle worker, and Redis commands per
// run from INFO commandstats; then the same shape with Asynq (no-op
// handler, same Redis, same concurrency). While draining it also prints the
// CPU redis-server and this process used per run (INFO cpu, getrusage),
// which the machine's other load disturbs less than runs/s. See
// docs/benchmarks.md.
//
//	cd bench/queue && go run . [-redis host:port] [-n 5000] [-concurrency 16]
//	cd bench/queue && go run . -asynq=false -cpuprofile cpu.prof   # pyoco only, profiled
//	cd bench/queue && go run . -cluster [-partitions 6] [-workers 2]  # partitioned namespace, 1 vs 3 masters
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/builtin"
	"github.com/pyoco/pyoco/redisstore"
	"github.com/pyoco/pyoco/telemetry"
	"github.com/pyoco/pyoco/worker"
)

var (
	redisAddr   = flag.String("redis", "", "Redis host:port to use (default: start a private redis-server on a free port)")
	n           = flag.Int("n", 5000, "runs (tasks) per drain measurement")
	concurrency = flag.Int("concurrency", 16, "concurrency of each worker / Asynq server")
	samples     = flag.Int("latency-samples", 300, "single runs for the latency measurement")
	withAsynq   = flag.Bool("asynq", true, "also measure Asynq (false: pyoco only, for quick iterations)")
	cpuProfile  = flag.String("cpuprofile", "", "write a CPU profile of the pyoco 1-worker drain to this file")
	withFlows   = flag.Bool("flows", true, "also drain runs of a 10-task chain and a 10-wide fan-out (pyoco, 1 worker, n/10 runs)")
)

const flowSrc = `version: 1
flow: {name: bench_noop}
tasks:
  a: {use: noop}
`

// chainSrc and fanoutSrc are the 10-task flows: t0 >> t1 >> … >> t9, and
// ten independent tasks run at once.
var chainSrc, fanoutSrc = tenTasks("bench_chain10", true), tenTasks("bench_fanout10", false)

func tenTasks(name string, chain bool) string {
	var b strings.Builder
	graph := ""
	for i := range 10 {
		if chain && i > 0 {
			graph += " >> "
		}
		if chain {
			graph += fmt.Sprintf("t%d", i)
		}
	}
	if chain {
		fmt.Fprintf(&b, "version: 1\nflow: {name: %s, graph: %q}\ntasks:\n", name, graph)
	} else {
		fmt.Fprintf(&b, "version: 1\nflow: {name: %s, max_parallel: 10}\ntasks:\n", name)
	}
	for i := range 10 {
		fmt.Fprintf(&b, "  t%d: {use: noop}\n", i)
	}
	return b.String()
}

func main() {
	flag.Parse()
	log.SetFlags(0)
	if *clusterMode {
		clusterBench(context.Background())
		return
	}
	addr := *redisAddr
	if addr == "" {
		a, stop, err := startRedis()
		if err != nil {
			log.Fatal(err)
		}
		defer stop()
		addr = a
	}
	ctx := context.Background()
	admin := redis.NewClient(&redis.Options{Addr: addr})
	defer admin.Close()
	if err := admin.Ping(ctx).Err(); err != nil {
		log.Fatalf("redis %s: %v", addr, err)
	}
	info, _ := admin.Info(ctx, "server").Result()
	fmt.Printf("redis %s at %s; n=%d, concurrency=%d\n\n", field(info, "redis_version"), addr, *n, *concurrency)

	type row struct {
		name              string
		perSec            float64
		submitCmd, runCmd float64
	}
	var rows []row
	for _, workers := range []int{1, 2} {
		r, sub, run := pyocoDrain(ctx, admin, addr, workers, flowSrc, *n)
		rows = append(rows, row{fmt.Sprintf("pyoco, %d worker(s)", workers), r, sub, run})
	}
	if *withFlows {
		for _, f := range []struct{ name, src string }{{"10-task chain", chainSrc}, {"10-wide fan-out", fanoutSrc}} {
			runs := max(*n/10, 1)
			fmt.Printf("(pyoco %s, 1 worker, %d runs:)\n", f.name, runs)
			r, sub, run := pyocoDrain(ctx, admin, addr, 1, f.src, runs)
			fmt.Printf("(pyoco %s: %.0f runs/s = %.0f tasks/s; commands per task: %.1f submit, %.1f execute)\n", f.name, r, 10*r, sub/10, run/10)
		}
	}
	p50, p99 := pyocoLatency(ctx, addr)
	header := func() {
		fmt.Printf("\n%-22s %12s %16s %16s %14s\n", "", "runs/s", "cmds/run submit", "cmds/run execute", "cmds/run total")
	}
	if !*withAsynq {
		header()
		for _, r := range rows {
			fmt.Printf("%-22s %12.0f %16.1f %16.1f %14.1f\n", r.name, r.perSec, r.submitCmd, r.runCmd, r.submitCmd+r.runCmd)
		}
		fmt.Printf("\nsubmit→COMPLETED on an idle worker: pyoco p50 %s p99 %s (%d samples)\n", p50, p99, *samples)
		return
	}
	for _, workers := range []int{1, 2} {
		r, sub, run := asynqDrain(ctx, admin, addr, workers)
		rows = append(rows, row{fmt.Sprintf("asynq, %d server(s)", workers), r, sub, run})
	}
	ap50, ap99 := asynqLatency(ctx, addr)

	header()
	for _, r := range rows {
		fmt.Printf("%-22s %12.0f %16.1f %16.1f %14.1f\n", r.name, r.perSec, r.submitCmd, r.runCmd, r.submitCmd+r.runCmd)
	}
	fmt.Printf("\nratio pyoco/asynq runs/s: 1 worker %.2f, 2 workers %.2f\n", rows[0].perSec/rows[2].perSec, rows[1].perSec/rows[3].perSec)
	fmt.Printf("submit→COMPLETED on an idle worker: pyoco p50 %s p99 %s (%d samples); asynq enqueue→handled p50 %s p99 %s (%d samples)\n",
		p50, p99, *samples, ap50, ap99, min(*samples, 30))
}

// newEngine returns an engine and store on their own Redis client, with
// the telemetry SDK installed (spans and metrics recorded, not exported).
func newEngine(ctx context.Context, addr, ns, id string, observe func(engine.Progress)) (*engine.Engine, *redisstore.Store, func()) {
	client := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 64})
	return newEngineOn(ctx, client, &redisstore.Config{Namespace: ns}, id, observe)
}

// newEngineOn is newEngine on client and a store with cfg; the returned
// func also closes client.
func newEngineOn(ctx context.Context, client redis.UniversalClient, cfg *redisstore.Config, id string, observe func(engine.Progress)) (*engine.Engine, *redisstore.Store, func()) {
	store, err := redisstore.New(client, cfg)
	if err != nil {
		log.Fatal(err)
	}
	reg := engine.NewRegistry()
	if err := builtin.Register(reg); err != nil {
		log.Fatal(err)
	}
	tel, err := telemetry.Setup(ctx, telemetry.Config{Env: func(k string) string {
		if k == "OTEL_TRACES_EXPORTER" {
			return "none"
		}
		return os.Getenv(k)
	}})
	if err != nil {
		log.Fatal(err)
	}
	eng, err := engine.New(store, reg, &engine.Config{WorkerID: id, TracerProvider: tel.TracerProvider, MeterProvider: tel.MeterProvider, Observer: observe})
	if err != nil {
		log.Fatal(err)
	}
	return eng, store, func() { _ = tel.Shutdown(ctx); _ = client.Close() }
}

// pyocoDrain pre-fills the queue with n runs, then drains it with workers
// workers; it returns runs/s and Redis commands per run while submitting and
// while executing.
func pyocoDrain(ctx context.Context, admin *redis.Client, addr string, workers int, src string, runs int) (perSec, submitCmds, runCmds float64) {
	ns := fmt.Sprintf("bench-%d-%d", workers, time.Now().UnixNano())
	sub, _, closeSub := newEngine(ctx, addr, ns, "submitter", nil)
	defer closeSub()
	flow, err := engine.LoadFlow("bench.yaml", []byte(src), sub.Registry())
	if err != nil {
		log.Fatal(err)
	}
	c0, calls0 := commands(ctx, admin), commandCalls(ctx, admin)
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 32 {
		wg.Go(func() {
			for next.Add(1) <= int64(runs) {
				if _, err := sub.Submit(ctx, &engine.SubmitParams{Flow: flow}); err != nil {
					log.Fatal(err)
				}
			}
		})
	}
	wg.Wait()
	c1, calls1 := commands(ctx, admin), commandCalls(ctx, admin)

	var finished atomic.Int64
	done := make(chan struct{})
	observe := func(p engine.Progress) {
		if p.Kind == engine.ProgressRunFinished && finished.Add(1) == int64(runs) {
			close(done)
		}
	}
	var ws []*worker.Worker
	var closers []func()
	for i := range workers {
		eng, store, closeFn := newEngine(ctx, addr, ns, fmt.Sprintf("bench-w%d", i), observe)
		w, err := worker.New(eng, store, &worker.Config{Concurrency: *concurrency})
		if err != nil {
			log.Fatal(err)
		}
		ws = append(ws, w)
		closers = append(closers, closeFn)
	}
	if *cpuProfile != "" && workers == 1 {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer f.Close()
	}
	cpu0, self0 := redisCPU(ctx, admin), selfCPU()
	start := time.Now()
	for _, w := range ws {
		if err := w.Start(ctx); err != nil {
			log.Fatal(err)
		}
	}
	<-done
	elapsed := time.Since(start)
	if *cpuProfile != "" && workers == 1 {
		pprof.StopCPUProfile()
	}
	fmt.Printf("(pyoco %d worker(s) draining: redis-server CPU %.0f%% of one core, %.0f µs/run; worker process CPU %.0f µs/run)\n", workers,
		100*(redisCPU(ctx, admin)-cpu0)/elapsed.Seconds(), 1e6*(redisCPU(ctx, admin)-cpu0)/float64(runs), 1e6*(selfCPU()-self0)/float64(runs))
	c2 := commands(ctx, admin)
	if workers == 1 {
		printCalls("pyoco submit", calls0, calls1, runs)
		printCalls("pyoco 1 worker execute", calls1, commandCalls(ctx, admin), runs)
	}
	for _, w := range ws {
		_ = w.Stop(ctx)
	}
	for _, c := range closers {
		c()
	}
	cleanup(ctx, admin, "{"+ns+"}*")
	return float64(runs) / elapsed.Seconds(), float64(c1-c0) / float64(runs), float64(c2-c1) / float64(runs)
}

// pyocoLatency submits single runs to one idle worker and returns the
// p50 and p99 of submit → COMPLETED (seen by the worker's engine).
func pyocoLatency(ctx context.Context, addr string) (p50, p99 time.Duration) {
	ns := fmt.Sprintf("bench-lat-%d", time.Now().UnixNano())
	sub, _, closeSub := newEngine(ctx, addr, ns, "submitter", nil)
	defer closeSub()
	flow, err := engine.LoadFlow("bench.yaml", []byte(flowSrc), sub.Registry())
	if err != nil {
		log.Fatal(err)
	}
	finished := make(chan string, 1)
	eng, store, closeFn := newEngine(ctx, addr, ns, "bench-lat", func(p engine.Progress) {
		if p.Kind == engine.ProgressRunFinished {
			finished <- p.RunID
		}
	})
	defer closeFn()
	w, err := worker.New(eng, store, &worker.Config{Concurrency: *concurrency})
	if err != nil {
		log.Fatal(err)
	}
	if err := w.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer func() { _ = w.Stop(ctx) }()
	time.Sleep(200 * time.Millisecond) // idle, blocked in XREADGROUP
	var lat []time.Duration
	for range *samples {
		start := time.Now()
		r, err := sub.Submit(ctx, &engine.SubmitParams{Flow: flow})
		if err != nil {
			log.Fatal(err)
		}
		if id := <-finished; id != r.ID {
			log.Fatalf("finished %s, want %s", id, r.ID)
		}
		lat = append(lat, time.Since(start))
		time.Sleep(2 * time.Millisecond)
	}
	return percentiles(lat)
}

// asynqDrain is pyocoDrain's shape with Asynq: n no-op tasks enqueued, then
// processed by servers servers of the same concurrency.
func asynqDrain(ctx context.Context, admin *redis.Client, addr string, servers int) (perSec, submitCmds, runCmds float64) {
	cleanup(ctx, admin, "asynq:*")
	client := asynq.NewClient(asynq.RedisClientOpt{Addr: addr, PoolSize: 64})
	defer client.Close()
	c0 := commands(ctx, admin)
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 32 {
		wg.Go(func() {
			for next.Add(1) <= int64(*n) {
				if _, err := client.Enqueue(asynq.NewTask("noop", nil), asynq.MaxRetry(0)); err != nil {
					log.Fatal(err)
				}
			}
		})
	}
	wg.Wait()
	c1 := commands(ctx, admin)
	var handled atomic.Int64
	done := make(chan struct{})
	h := asynq.HandlerFunc(func(context.Context, *asynq.Task) error {
		if handled.Add(1) == int64(*n) {
			close(done)
		}
		return nil
	})
	var srvs []*asynq.Server
	cpu0, self0 := redisCPU(ctx, admin), selfCPU()
	start := time.Now()
	for range servers {
		s := asynq.NewServer(asynq.RedisClientOpt{Addr: addr, PoolSize: 64}, asynq.Config{Concurrency: *concurrency, LogLevel: asynq.ErrorLevel})
		if err := s.Start(h); err != nil {
			log.Fatal(err)
		}
		srvs = append(srvs, s)
	}
	<-done
	elapsed := time.Since(start)
	fmt.Printf("(asynq %d server(s) draining: redis-server CPU %.0f%% of one core, %.0f µs/task; server process CPU %.0f µs/task)\n", servers,
		100*(redisCPU(ctx, admin)-cpu0)/elapsed.Seconds(), 1e6*(redisCPU(ctx, admin)-cpu0)/float64(*n), 1e6*(selfCPU()-self0)/float64(*n))
	c2 := commands(ctx, admin)
	for _, s := range srvs {
		s.Shutdown()
	}
	cleanup(ctx, admin, "asynq:*")
	return float64(*n) / elapsed.Seconds(), float64(c1-c0) / float64(*n), float64(c2-c1) / float64(*n)
}

// asynqLatency is pyocoLatency with Asynq: enqueue → handler returned.
func asynqLatency(ctx context.Context, addr string) (p50, p99 time.Duration) {
	client := asynq.NewClient(asynq.RedisClientOpt{Addr: addr})
	defer client.Close()
	handled := make(chan struct{}, 1)
	s := asynq.NewServer(asynq.RedisClientOpt{Addr: addr}, asynq.Config{Concurrency: *concurrency, LogLevel: asynq.ErrorLevel})
	if err := s.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { handled <- struct{}{}; return nil })); err != nil {
		log.Fatal(err)
	}
	defer s.Shutdown()
	time.Sleep(200 * time.Millisecond)
	var lat []time.Duration
	for range min(*samples, 30) { // an idle Asynq server polls once a second: few samples
		start := time.Now()
		if _, err := client.Enqueue(asynq.NewTask("noop", nil), asynq.MaxRetry(0)); err != nil {
			log.Fatal(err)
		}
		<-handled
		lat = append(lat, time.Since(start))
		time.Sleep(2 * time.Millisecond)
	}
	return percentiles(lat)
}

func percentiles(lat []time.Duration) (p50, p99 time.Duration) {
	slices.Sort(lat)
	at := func(q float64) time.Duration { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
	return at(0.50).Round(10 * time.Microsecond), at(0.99).Round(10 * time.Microsecond)
}

// commands returns the total calls in INFO commandstats, minus the INFO
// calls themselves.
func commands(ctx context.Context, c *redis.Client) int64 {
	var total int64
	for name, k := range commandCalls(ctx, c) {
		if strings.HasSuffix(name, "#usec") {
			continue
		}
		total += k
	}
	return total
}

// commandCalls returns the calls per command in INFO commandstats, minus
// the INFO calls themselves.
func commandCalls(ctx context.Context, c *redis.Client) map[string]int64 {
	s, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		log.Fatal(err)
	}
	out := make(map[string]int64)
	for _, line := range strings.Split(s, "\n") {
		if !strings.HasPrefix(line, "cmdstat_") || strings.HasPrefix(line, "cmdstat_info:") {
			continue
		}
		name, rest, _ := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":calls=")
		v, rest, _ := strings.Cut(rest, ",")
		k, _ := strconv.ParseInt(v, 10, 64)
		out[name] = k
		if u, ok := strings.CutPrefix(rest, "usec="); ok {
			u, _, _ = strings.Cut(u, ",")
			us, _ := strconv.ParseInt(u, 10, 64)
			out[name+"#usec"] = us
		}
	}
	return out
}

// printCalls prints the calls per run of each command between two
// commandCalls snapshots, most frequent first.
func printCalls(what string, before, after map[string]int64, runs int) {
	type kv struct {
		name string
		n    int64
	}
	var d []kv
	for name, n := range after {
		if strings.HasSuffix(name, "#usec") {
			continue
		}
		if n -= before[name]; n > 0 {
			d = append(d, kv{name, n})
		}
	}
	slices.SortFunc(d, func(a, b kv) int { return int(b.n - a.n) })
	var b, u strings.Builder
	for _, e := range d {
		fmt.Fprintf(&b, " %s %.2f", strings.ToUpper(e.name), float64(e.n)/float64(runs))
		us := after[e.name+"#usec"] - before[e.name+"#usec"]
		fmt.Fprintf(&u, " %s %.1f", strings.ToUpper(e.name), float64(us)/float64(runs))
	}
	fmt.Printf("(%s, Redis commands per run:%s)\n", what, b.String())
	fmt.Printf("(%s, Redis µs per run by command, a script's own time including its commands':%s)\n", what, u.String())
}

// selfCPU returns the CPU seconds (user + system) this process used so far.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		log.Fatal(err)
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// redisCPU returns the CPU seconds redis-server used so far (INFO cpu).
func redisCPU(ctx context.Context, c *redis.Client) float64 {
	s, err := c.Info(ctx, "cpu").Result()
	if err != nil {
		log.Fatal(err)
	}
	var total float64
	for _, f := range []string{"used_cpu_sys", "used_cpu_user"} {
		v, _ := strconv.ParseFloat(field(s, f), 64)
		total += v
	}
	return total
}

func cleanup(ctx context.Context, c *redis.Client, pattern string) {
	iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	for _, k := range keys {
		c.Del(ctx, k)
	}
}

func field(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return "?"
}

// startRedis starts redis-server on a free loopback port (no persistence)
// and returns its address and a stop function.
func startRedis() (string, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	dir, err := os.MkdirTemp("", "pyoco-bench-redis-")
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start redis-server (is it on PATH? or pass -redis): %w", err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	for i := 0; ; i++ {
		if c.Ping(context.Background()).Err() == nil {
			break
		}
		if i > 200 {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return "", nil, fmt.Errorf("redis-server on %s did not start", addr)
		}
		time.Sleep(25 * time.Millisecond)
	}
	return addr, func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = os.RemoveAll(dir)
	}, nil
}
