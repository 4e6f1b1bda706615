// Command api measures pyoco's REST API reads on a Redis that holds many
// finished runs (docs/benchmarks.md):
//
//  1. fill: N finished runs (default 1,000,000; 10 flows of 3 tasks; 70%
//     COMPLETED, 20% FAILED, 10% CANCELLED; two tags each) written through
//     redisstore's own code path, engine.Submit (the create script), then
//     RunStart, TaskUpdate per task and RunFinish, exactly as a worker does,
//     from many goroutines whose Redis commands a client hook batches into
//     pipelines (so the data is what redisstore writes, only faster to
//     write). It reports the fill time and the Redis memory used.
//
//  2. serve: the API in this process (api.New on a redisstore.Store of a
//     client from redisstore.OpenClient, as `pyoco server --redis` makes it,
//     with the telemetry SDK: otelhttp spans and metrics recorded, not
//     exported) on a loopback port, twice: as configured by default
//     (concurrent identical reads share one store read) and with
//     Config.NoCoalescing (each request reads the store). Before, it
//     executes one run of each of 10 flows of 100 noop tasks, so /metrics
//     holds 1,000 task series.
//
//  3. load: 1 client, then C concurrent clients (default 50), closed loop,
//     R requests each way (R/10 with 1 client): GET /runs?status=FAILED&limit=50
//     and GET /runs/{id} (random ids of the fill), plus other list shapes,
//     latency p50/p90/p99/max, requests/s, this process's CPU per request
//     (client and server), and Redis commands and script time per request
//     (INFO commandstats); then the same reads on the store directly
//     (store.RunList, store.RunGet) to split API time from Redis time; then
//     /metrics scrape time (Prometheus text and OpenMetrics), sequential
//     scrapes.
//
//     cd bench/api && go run . [-n 1000000] [-clients 50] [-requests 20000] [-redis host:port]
//
// The private redis-server (no persistence) is started on a free loopback
// port and killed at the end unless -redis is given.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pyoco/pyoco/api"
	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/builtin"
	"github.com/pyoco/pyoco/redisstore"
	"github.com/pyoco/pyoco/telemetry"
)

var (
	redisAddr   = flag.String("redis", "", "Redis host:port to use (default: start a private redis-server on a free port)")
	n           = flag.Int("n", 1_000_000, "finished runs to fill")
	fillers     = flag.Int("fill-goroutines", 1024, "goroutines writing runs during the fill")
	batch       = flag.Int("pipeline", 512, "most commands per pipeline during the fill")
	clients     = flag.Int("clients", 50, "concurrent HTTP clients")
	requests    = flag.Int("requests", 20000, "requests per measured endpoint (spread over the clients)")
	scrapes     = flag.Int("scrapes", 50, "sequential /metrics scrapes per format")
	taskSeries  = flag.Int("task-series", 1000, "task series in /metrics (flows of 100 noop tasks, one run each)")
	namespace   = flag.String("namespace", "pyoco", "Redis key namespace")
	skipFill    = flag.Bool("skip-fill", false, "do not fill: measure the runs already in -redis (ids are read back)")
	only        = flag.String("only", "", "measure only the reads whose name contains this")
	cpuProfile  = flag.String("cpuprofile", "", "write a CPU profile of the load phase (this process: client and API server) to this file")
	fillFlows   = 10
	tasksOfFlow = []string{"fetch", "build", "notify"}
)

func main() {
	flag.Parse()
	log.SetFlags(0)
	ctx := context.Background()
	addr := *redisAddr
	if addr == "" {
		a, stop, err := startRedis()
		if err != nil {
			log.Fatal(err)
		}
		defer stop()
		addr = a
	}
	admin := redis.NewClient(&redis.Options{Addr: addr})
	defer admin.Close()
	if err := admin.Ping(ctx).Err(); err != nil {
		log.Fatalf("redis %s: %v", addr, err)
	}
	info, _ := admin.Info(ctx, "server").Result()
	fmt.Printf("redis %s at %s; Go %s, GOMAXPROCS %d, %d CPUs\n", field(info, "redis_version"), addr,
		runtime.Version(), runtime.GOMAXPROCS(0), runtime.NumCPU())

	reg := engine.NewRegistry()
	if err := builtin.Register(reg); err != nil {
		log.Fatal(err)
	}
	flows := benchFlows(reg)

	var ids []string
	if *skipFill {
		ids = readIDs(ctx, admin)
		fmt.Printf("using the %d runs already in Redis\n", len(ids))
	} else {
		ids = fill(ctx, addr, admin, reg, flows)
	}
	if len(ids) == 0 {
		log.Fatal("no runs")
	}

	tel, err := telemetry.Setup(ctx, telemetry.Config{Env: func(string) string { return "" }})
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = tel.Shutdown(ctx) }()
	client, err := redisstore.OpenClient("redis://" + addr)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	store, err := redisstore.New(client, &redisstore.Config{Namespace: *namespace})
	if err != nil {
		log.Fatal(err)
	}
	eng, err := engine.New(store, reg, &engine.Config{WorkerID: "bench-api",
		TracerProvider: tel.TracerProvider, MeterProvider: tel.MeterProvider})
	if err != nil {
		log.Fatal(err)
	}
	wide := wideRuns(ctx, eng, reg)
	fs, err := api.NewFlows(append(flows, wide...)...)
	if err != nil {
		log.Fatal(err)
	}
	srv, err := api.New(eng, &api.Config{Flows: fs, Metrics: tel.Handler(),
		TracerProvider: tel.TracerProvider, MeterProvider: tel.MeterProvider})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	base, stopServe := serve(srv.Handler())
	defer stopServe()

	// The same API with Config.NoCoalescing: every request reads the store.
	tel2, err := telemetry.Setup(ctx, telemetry.Config{Env: func(string) string { return "" }})
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = tel2.Shutdown(ctx) }()
	eng2, err := engine.New(store, reg, &engine.Config{WorkerID: "bench-api-2",
		TracerProvider: tel2.TracerProvider, MeterProvider: tel2.MeterProvider})
	if err != nil {
		log.Fatal(err)
	}
	srv2, err := api.New(eng2, &api.Config{Flows: fs, Metrics: tel2.Handler(), NoCoalescing: true,
		TracerProvider: tel2.TracerProvider, MeterProvider: tel2.MeterProvider})
	if err != nil {
		log.Fatal(err)
	}
	defer srv2.Close()
	base2, stopServe2 := serve(srv2.Handler())
	defer stopServe2()

	hc := &http.Client{Transport: &http.Transport{MaxIdleConns: *clients * 2, MaxIdleConnsPerHost: *clients * 2}}
	get := func(path string) func(int) error {
		return func(int) error { return httpGet(hc, base+path) }
	}
	randomID := func() string { return ids[rand.IntN(len(ids))] }

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("\nload average before the measurements: %s", load)
	// A cursor 200 pages deep into the FAILED runs.
	deepCursor, deepPage := "", 1
	for deepPage < 200 {
		p, err := store.RunList(ctx, &engine.RunListParams{Statuses: []engine.RunStatus{engine.RunFailed}, Limit: 50, Cursor: deepCursor})
		if err != nil {
			log.Fatalf("deep cursor: %v", err)
		}
		if p.NextCursor == "" {
			break
		}
		deepCursor, deepPage = p.NextCursor, deepPage+1
	}
	fmt.Printf("\nEach read: a warm-up of a tenth of its requests, then the measured requests.\n")
	reads := []struct {
		name string
		do   func(int) error
		// few: measured with a tenth of the requests (slow by design)
		few bool
	}{
		{"GET /runs?status=FAILED&limit=50", get("/runs?status=FAILED&limit=50"), false},
		{"GET /runs?status=FAILED&limit=50 (NoCoalescing)", func(int) error { return httpGet(hc, base2+"/runs?status=FAILED&limit=50") }, false},
		{"GET /runs/{id}", func(int) error { return httpGet(hc, base+"/runs/"+randomID()) }, false},
		{"GET /runs/{id} (NoCoalescing)", func(int) error { return httpGet(hc, base2+"/runs/"+randomID()) }, false},
		{"GET /runs?limit=50 (no filter)", get("/runs?limit=50"), false},
		{"GET /runs?flow=bench_f3&status=FAILED&limit=50", get("/runs?flow=bench_f3&status=FAILED&limit=50"), false},
		{fmt.Sprintf("GET /runs?status=FAILED&limit=50, page %d (cursor)", deepPage), func(i int) error { return httpGet(hc, base+"/runs?status=FAILED&limit=50&cursor="+deepCursor) }, false},
		{"GET /runs?flow=bench_f3&tag=batch-50 (disjoint: walks the tag index)", get("/runs?flow=bench_f3&tag=batch-50&limit=50"), true},
		{"store.RunList(status=FAILED, limit 50)", func(int) error {
			p, err := store.RunList(ctx, &engine.RunListParams{Statuses: []engine.RunStatus{engine.RunFailed}, Limit: 50})
			if err == nil && len(p.Runs) != 50 {
				err = fmt.Errorf("%d runs", len(p.Runs))
			}
			return err
		}, false},
		{"store.RunGet", func(int) error { _, err := store.RunGet(ctx, randomID()); return err }, false},
	}
	for _, conc := range []int{1, *clients} {
		fmt.Printf("\n%d concurrent client(s), closed loop:\n\n", conc)
		fmt.Printf("| read | requests | p50 | p90 | p99 | max | req/s | Go CPU µs/req | Redis cmds/req | Redis µs/req (scripts) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, r := range reads {
			total := *requests
			if conc == 1 {
				total /= 10
			}
			if r.few {
				total /= 10
			}
			measure(admin, r.name, conc, max(total, conc), r.do)
		}
	}

	fmt.Printf("\n/metrics, %d sequential scrapes each (%d task series):\n\n", *scrapes, *taskSeries)
	fmt.Printf("| format | p50 | p99 | max | bytes | samples |\n|---|---:|---:|---:|---:|---:|\n")
	scrape(hc, base+"/metrics", "", "Prometheus text")
	scrape(hc, base+"/metrics", "application/openmetrics-text;version=1.0.0", "OpenMetrics (exemplars)")
}

// serve serves h on a free loopback port and returns its base URL.
func serve(h http.Handler) (string, func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = hs.Close() }
}

// benchFlows are the 10 flows of the fill, 3 tasks each.
func benchFlows(reg *engine.Registry) []*engine.Flow {
	var flows []*engine.Flow
	for i := range fillFlows {
		src := fmt.Sprintf("version: 1\nflow:\n  name: bench_f%d\n  defaults: {i: 0}\ntasks:\n"+
			"  fetch: {use: log, inputs: {message: \"fetch ${ctx.params.i}\"}}\n"+
			"  build: {use: noop, depends_on: [fetch]}\n"+
			"  notify: {use: noop, depends_on: [build]}\n", i)
		f, err := engine.LoadFlow(fmt.Sprintf("bench_f%d.yaml", i), []byte(src), reg)
		if err != nil {
			log.Fatal(err)
		}
		flows = append(flows, f)
	}
	return flows
}

// fill writes *n finished runs through redisstore (see the package doc) and
// returns their ids.
func fill(ctx context.Context, addr string, admin *redis.Client, reg *engine.Registry, flows []*engine.Flow) []string {
	memBefore := usedMemory(ctx, admin)
	raw := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 16})
	defer raw.Close()
	piped := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 4})
	defer piped.Close()
	ap := newAutoPipe(raw, *batch, 8)
	defer ap.close()
	piped.AddHook(ap)
	store, err := redisstore.New(piped, &redisstore.Config{Namespace: *namespace})
	if err != nil {
		log.Fatal(err)
	}
	eng, err := engine.New(store, reg, &engine.Config{WorkerID: "bench-fill"})
	if err != nil {
		log.Fatal(err)
	}

	ids := make([]string, *n)
	var next, done atomic.Int64
	var failed atomic.Int64
	start := time.Now()
	stopProgress := make(chan struct{})
	go func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-t.C:
				d := done.Load()
				fmt.Fprintf(os.Stderr, "fill: %d/%d runs, %.0f runs/s\n", d, *n, float64(d)/time.Since(start).Seconds())
			}
		}
	}()
	var wg sync.WaitGroup
	for w := range *fillers {
		wg.Go(func() {
			worker := fmt.Sprintf("fill-%d", w%8)
			for {
				i := int(next.Add(1) - 1)
				if i >= *n {
					return
				}
				id, err := fillOne(ctx, eng, store, flows[(i/10)%len(flows)], i, worker)
				if err != nil {
					if failed.Add(1) <= 5 {
						log.Printf("fill run %d: %v", i, err)
					}
					continue
				}
				ids[i] = id
				done.Add(1)
			}
		})
	}
	wg.Wait()
	close(stopProgress)
	took := time.Since(start)
	if f := failed.Load(); f > 0 {
		log.Fatalf("fill: %d runs failed", f)
	}
	memAfter := usedMemory(ctx, admin)
	keys, _ := admin.DBSize(ctx).Result()
	fmt.Printf("\nfill: %d finished runs in %s (%.0f runs/s, %d goroutines, pipelines of up to %d commands, %.1f commands/pipeline on average)\n",
		*n, took.Round(100*time.Millisecond), float64(*n)/took.Seconds(), *fillers, *batch, ap.avgBatch())
	fmt.Printf("redis: %d keys, used_memory %s after (%s before): %.0f bytes/run\n",
		keys, mib(memAfter), mib(memBefore), float64(memAfter-memBefore)/float64(*n))
	return ids
}

// fillOne writes one finished run as a worker would: submit, start, each
// task's end, finish. Every 10th run is CANCELLED, two in 10 FAILED; the
// flow changes every 10 runs, so each flow has every status.
func fillOne(ctx context.Context, eng *engine.Engine, store *redisstore.Store, f *engine.Flow, i int, worker string) (string, error) {
	run, err := eng.Submit(ctx, &engine.SubmitParams{Flow: f, Params: map[string]any{"i": i},
		Tags: []string{"bench", "batch-" + strconv.Itoa(i%100)}})
	if err != nil {
		return "", err
	}
	now := time.Now().UTC()
	if _, err := store.RunStart(ctx, &engine.RunStartParams{RunID: run.ID, WorkerID: worker, At: now}); err != nil {
		return "", err
	}
	final := engine.RunCompleted
	switch i % 10 {
	case 0, 1:
		final = engine.RunFailed
	case 2:
		final = engine.RunCancelled
	}
	runErr := ""
	for k, name := range f.Order {
		st, taskErr, out := engine.TaskSucceeded, "", json.RawMessage(`{"ok":true,"n":`+strconv.Itoa(i)+`}`)
		last := k == len(f.Order)-1
		switch {
		case last && final == engine.RunFailed:
			st, taskErr, out = engine.TaskFailed, "exit status 1", nil
			runErr = "task " + name + " failed: exit status 1"
		case last && final == engine.RunCancelled:
			st, taskErr, out = engine.TaskCancelled, "cancelled", nil
			runErr = "cancelled"
		}
		end := time.Now().UTC()
		if err := store.TaskUpdate(ctx, &engine.TaskUpdateParams{RunID: run.ID, Task: name, Status: st,
			StartedAt: now, EndedAt: end, Error: taskErr, Output: out,
			Attempt: &engine.Attempt{Number: 1, Status: st, StartedAt: now, EndedAt: end, Error: taskErr,
				WorkerID: worker, SpanID: engine.NewTraceID().String()[:16]},
		}); err != nil {
			return "", err
		}
	}
	if _, err := store.RunFinish(ctx, &engine.RunFinishParams{RunID: run.ID, Status: final, At: time.Now().UTC(), Error: runErr}); err != nil {
		return "", err
	}
	return run.ID, nil
}

// wideRuns executes one run of each of the task-series/100 flows of 100
// noop tasks, so /metrics has that many task series.
func wideRuns(ctx context.Context, eng *engine.Engine, reg *engine.Registry) []*engine.Flow {
	var flows []*engine.Flow
	for i := range *taskSeries / 100 {
		var b strings.Builder
		fmt.Fprintf(&b, "version: 1\nflow: {name: bench_wide%d, max_parallel: 16}\ntasks:\n", i)
		for t := range 100 {
			fmt.Fprintf(&b, "  t%03d: {use: noop}\n", t)
		}
		f, err := engine.LoadFlow("", []byte(b.String()), reg)
		if err != nil {
			log.Fatal(err)
		}
		run, err := eng.Submit(ctx, &engine.SubmitParams{Flow: f})
		if err != nil {
			log.Fatal(err)
		}
		r, err := eng.Execute(ctx, &engine.ExecuteParams{RunID: run.ID})
		if err != nil {
			log.Fatal(err)
		}
		if r.Status != engine.RunCompleted {
			log.Fatalf("wide run %s: %s", r.ID, r.Status)
		}
		flows = append(flows, f)
	}
	return flows
}

// measure runs *requests calls of do over *clients goroutines (after a
// warm-up of a tenth as many) and prints one table row.
func measure(admin *redis.Client, name string, conc, total int, do func(int) error) {
	if *only != "" && !strings.Contains(name, *only) {
		return
	}
	run := func(total int) ([]time.Duration, time.Duration) {
		per := max(total/conc, 1)
		lat := make([][]time.Duration, conc)
		var errs atomic.Int64
		var firstErr atomic.Value
		start := time.Now()
		var wg sync.WaitGroup
		for c := range conc {
			wg.Go(func() {
				l := make([]time.Duration, 0, per)
				for i := range per {
					t0 := time.Now()
					err := do(i)
					l = append(l, time.Since(t0))
					if err != nil {
						errs.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
					}
				}
				lat[c] = l
			})
		}
		wg.Wait()
		took := time.Since(start)
		if e := errs.Load(); e > 0 {
			log.Fatalf("%s: %d errors, first: %v", name, e, firstErr.Load())
		}
		return slices.Concat(lat...), took
	}
	run(max(total/10, conc))
	calls0, usec0 := redisTime(admin)
	cpu0 := cpuTime()
	all, took := run(total)
	cpu1 := cpuTime()
	calls1, usec1 := redisTime(admin)
	slices.Sort(all)
	k := float64(len(all))
	fmt.Printf("| %s | %d | %s | %s | %s | %s | %.0f | %.0f | %.1f | %.0f |\n", name, len(all), msStr(pct(all, 50)), msStr(pct(all, 90)), msStr(pct(all, 99)),
		msStr(all[len(all)-1]), k/took.Seconds(), float64((cpu1-cpu0).Microseconds())/k,
		float64(calls1-calls0)/k, float64(usec1-usec0)/k)
}

func scrape(hc *http.Client, url, accept, name string) {
	var lat []time.Duration
	var size, samples int
	for range *scrapes {
		req, _ := http.NewRequest("GET", url, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		t0 := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		lat = append(lat, time.Since(t0))
		if err != nil || resp.StatusCode != http.StatusOK {
			log.Fatalf("scrape: %v %d", err, resp.StatusCode)
		}
		size = len(body)
		samples = 0
		for _, l := range strings.Split(string(body), "\n") {
			if l != "" && !strings.HasPrefix(l, "#") {
				samples++
			}
		}
	}
	slices.Sort(lat)
	fmt.Printf("| %s | %s | %s | %s | %d | %d |\n", name, msStr(pct(lat, 50)), msStr(pct(lat, 99)), msStr(lat[len(lat)-1]), size, samples)
}

func httpGet(hc *http.Client, url string) error {
	resp, err := hc.Get(url)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d", url, resp.StatusCode)
	}
	return err
}

func pct(sorted []time.Duration, p float64) time.Duration {
	i := int(float64(len(sorted))*p/100+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func msStr(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func usedMemory(ctx context.Context, c *redis.Client) int64 {
	info, err := c.Info(ctx, "memory").Result()
	if err != nil {
		log.Fatal(err)
	}
	v, _ := strconv.ParseInt(field(info, "used_memory"), 10, 64)
	return v
}

// readIDs reads the run ids back from the index of all runs (-skip-fill).
func readIDs(ctx context.Context, c *redis.Client) []string {
	var ids []string
	prefix := "{" + *namespace + "}:run:"
	iter := c.Scan(ctx, 0, prefix+"*", 10000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		id := strings.TrimPrefix(k, prefix)
		if !strings.Contains(id, ":") {
			ids = append(ids, id)
		}
	}
	if err := iter.Err(); err != nil {
		log.Fatal(err)
	}
	return ids
}

// cpuTime is the user+system CPU time of this process (client and API
// server together).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		log.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// redisTime returns the commands Redis executed (INFO commandstats; the
// commands a script calls count too) and the microseconds it spent in the
// top-level ones: scripts (whose time includes their commands) and plain
// commands, not the commands scripts called (see scriptCmds).
func redisTime(c *redis.Client) (calls, usec int64) {
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		log.Fatal(err)
	}
	for _, l := range strings.Split(info, "\r\n") {
		_, stats, ok := strings.Cut(l, ":")
		if !ok || !strings.HasPrefix(l, "cmdstat_") || strings.HasPrefix(l, "cmdstat_info:") {
			continue
		}
		name := strings.TrimPrefix(l[:strings.Index(l, ":")], "cmdstat_")
		for _, kv := range strings.Split(stats, ",") {
			k, v, _ := strings.Cut(kv, "=")
			n, _ := strconv.ParseInt(v, 10, 64)
			switch {
			case k == "calls":
				calls += n
			case k == "usec" && !scriptCmds[name]:
				usec += n
			}
		}
	}
	return calls, usec
}

// scriptCmds are the commands pyoco's scripts call: their time is inside
// the scripts' (the reads measured here run no such command directly).
var scriptCmds = map[string]bool{"hmget": true, "hgetall": true, "hget": true, "zrange": true, "zcard": true,
	"zscore": true, "hset": true, "zadd": true, "zrem": true, "xadd": true, "pexpireat": true, "time": true,
	"xrange": true, "xrevrange": true, "exists": true, "hincrby": true, "hdel": true, "xdel": true, "xack": true}

func field(info, name string) string {
	for _, l := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(l, name+":"); ok {
			return v
		}
	}
	return "?"
}

// autoPipe is a go-redis hook that sends the commands of concurrent callers
// in pipelines: each command waits in a queue, and a few senders each take
// what has queued up (up to max) and send it as one pipeline on raw. The
// callers see ordinary commands (Lua scripts, their NOSCRIPT fallback and
// all), so redisstore's code runs unchanged.
type autoPipe struct {
	raw     *redis.Client
	max     int
	queue   chan *pending
	stop    chan struct{}
	wg      sync.WaitGroup
	batches atomic.Int64
	cmds    atomic.Int64
}

type pending struct {
	ctx  context.Context
	cmd  redis.Cmder
	done chan struct{}
}

func newAutoPipe(raw *redis.Client, max, senders int) *autoPipe {
	a := &autoPipe{raw: raw, max: max, queue: make(chan *pending, max*senders), stop: make(chan struct{})}
	for range senders {
		a.wg.Go(a.send)
	}
	return a
}

func (a *autoPipe) send() {
	batch := make([]*pending, 0, a.max)
	for {
		select {
		case <-a.stop:
			return
		case p := <-a.queue:
			batch = append(batch[:0], p)
		}
	more:
		for len(batch) < a.max {
			select {
			case p := <-a.queue:
				batch = append(batch, p)
			default:
				break more
			}
		}
		pipe := a.raw.Pipeline()
		for _, p := range batch {
			_ = pipe.Process(p.ctx, p.cmd)
		}
		_, _ = pipe.Exec(context.Background()) // each command carries its own error
		a.batches.Add(1)
		a.cmds.Add(int64(len(batch)))
		for _, p := range batch {
			close(p.done)
		}
	}
}

func (a *autoPipe) close() {
	close(a.stop)
	a.wg.Wait()
}

func (a *autoPipe) avgBatch() float64 {
	b := a.batches.Load()
	if b == 0 {
		return 0
	}
	return float64(a.cmds.Load()) / float64(b)
}

func (a *autoPipe) DialHook(next redis.DialHook) redis.DialHook { return next }

func (a *autoPipe) ProcessHook(redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		p := &pending{ctx: ctx, cmd: cmd, done: make(chan struct{})}
		a.queue <- p
		<-p.done
		return cmd.Err()
	}
}

func (a *autoPipe) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
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
