package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/pyoco/pyoco/api"
	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/memstore"
	"github.com/pyoco/pyoco/redisstore"
	"github.com/pyoco/pyoco/schedule"
	"github.com/pyoco/pyoco/telemetry"
	"github.com/pyoco/pyoco/webhooks"
	"github.com/pyoco/pyoco/webhooks/delivery"
	"github.com/pyoco/pyoco/worker"
)

// serverOptions are the settings of `pyoco server` (flag > env > config
// file > default, SPEC §10).
type serverOptions struct {
	addr            string
	flows           string
	redis           string
	namespace       string
	partitions      int
	workers         int
	concurrency     int
	lease           time.Duration
	maxAttempts     int
	retention       time.Duration
	config          string
	shutdownTimeout time.Duration
	traceURL        string
	popts           pluginOptions
	// webhooks are the endpoints of the config file's webhooks: section and
	// of PYOCO_WEBHOOK_URL (docs/webhooks.md).
	webhooks []*webhooks.Endpoint
	// workersSet is true when --workers, PYOCO_WORKERS or the config file
	// gave a worker count (the default depends on the store).
	workersSet bool
	// ready, if set, receives the listening address (tests).
	ready func(addr string)
}

// serverFile is the config file of `pyoco server` (--config, PYOCO_CONFIG):
// YAML with the settings of SPEC §10 by their snake_case names, and the
// webhooks: section of SPEC §8 (docs/webhooks.md). Sections read by other
// commands (metrics_addr) are accepted and ignored.
type serverFile struct {
	Addr            string                    `yaml:"addr"`
	Flows           string                    `yaml:"flows"`
	Redis           string                    `yaml:"redis"`
	Namespace       string                    `yaml:"namespace"`
	Partitions      int                       `yaml:"partitions"`
	Workers         *int                      `yaml:"workers"`
	Concurrency     int                       `yaml:"concurrency"`
	Lease           string                    `yaml:"lease"`
	MaxAttempts     int                       `yaml:"max_attempts"`
	Retention       string                    `yaml:"retention"`
	ShutdownTimeout string                    `yaml:"shutdown_timeout"`
	MetricsAddr     string                    `yaml:"metrics_addr"`
	TraceURL        string                    `yaml:"trace_url"`
	Webhooks        []webhooks.EndpointConfig `yaml:"webhooks"`
}

func newServerCmd(e *env) *cobra.Command {
	o := &serverOptions{}
	c := &cobra.Command{
		Use:   "server",
		Short: "Serve the REST API (and, without Redis, run the flows in-process)",
		Long: `Serve pyoco's REST API (docs/api.md) with /metrics, on --addr.

Without --redis, runs live in an embedded in-memory store (lost on exit) and
--workers in-process workers (default 1) execute them. With --redis, state and
the queue live in Redis and 'pyoco worker' processes execute the runs
(--workers defaults to 0 there).

The flows of --flows (every *.yaml and *.yml file) can be submitted by name;
files that do not load are logged and listed under "errors" by GET /flows.
PYOCO_API_TOKEN, when set, is the bearer token every endpoint but /healthz,
/readyz and /metrics requires. SIGTERM (or Ctrl+C) stops gracefully.

Settings: flag > environment (PYOCO_ADDR, PYOCO_FLOWS, PYOCO_REDIS_URL,
PYOCO_NAMESPACE, PYOCO_WORKERS, PYOCO_CONCURRENCY, PYOCO_LEASE,
PYOCO_MAX_ATTEMPTS, PYOCO_RETENTION, PYOCO_TRACE_URL, PYOCO_CONFIG) > config
file > default.

The run viewer is served at /ui (a browser page over this API, with the same
token); --trace-url links each run to its trace in Jaeger or Tempo.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(c *cobra.Command, args []string) error {
			if err := o.resolve(c, e); err != nil {
				return err
			}
			return runServer(c.Context(), e, o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.addr, "addr", ":8000", "API listen address [PYOCO_ADDR]")
	f.StringVar(&o.flows, "flows", "./flows", "directory of the flow files offered by name [PYOCO_FLOWS]")
	f.StringVar(&o.redis, "redis", "", "Redis URL or comma-separated Cluster host:port list; none: embedded memory store [PYOCO_REDIS_URL]")
	f.StringVar(&o.namespace, "namespace", redisstore.DefaultNamespace, "Redis key namespace [PYOCO_NAMESPACE]")
	f.IntVar(&o.partitions, "partitions", 1, "partitions of the namespace, spread over Redis Cluster masters; fixed at first use [PYOCO_PARTITIONS]")
	// The default depends on --redis (resolve sets it), so the flag's own
	// is 0, which the help does not print as "(default 0)".
	f.IntVar(&o.workers, "workers", 0, "in-process workers: default 1 without --redis, 0 with it [PYOCO_WORKERS]")
	f.IntVar(&o.concurrency, "concurrency", worker.DefaultConcurrency, "runs each in-process worker executes at once [PYOCO_CONCURRENCY]")
	f.DurationVar(&o.lease, "lease", worker.DefaultLease, "lease before a silent worker's runs are taken over [PYOCO_LEASE]")
	f.IntVar(&o.maxAttempts, "max-attempts", worker.DefaultMaxAttempts, "workers that may take a run before it fails [PYOCO_MAX_ATTEMPTS]")
	f.DurationVar(&o.retention, "retention", redisstore.DefaultRetention, "how long finished runs are kept in Redis [PYOCO_RETENTION]")
	f.StringVar(&o.config, "config", "", "YAML config file [PYOCO_CONFIG]")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 25*time.Second, "how long a stop waits for requests and runs to finish")
	f.StringVar(&o.traceURL, "trace-url", "", "link from the run viewer (/ui) to a run's trace, {trace_id} replaced, e.g. http://localhost:16686/trace/{trace_id} [PYOCO_TRACE_URL]")
	o.popts.register(c)
	return c
}

// resolve applies env, then the config file, to the flags not given.
func (o *serverOptions) resolve(c *cobra.Command, e *env) error {
	if !c.Flags().Changed("config") {
		o.config = e.getenv("PYOCO_CONFIG")
	}
	var file serverFile
	if o.config != "" {
		b, err := os.ReadFile(o.config)
		if err != nil {
			return usageErr("--config: %v", err)
		}
		if err := yaml.UnmarshalWithOptions(b, &file, yaml.Strict()); err != nil {
			return usageErr("--config %s: %v", o.config, err)
		}
	}
	// set applies env (or else the file's value) to a flag not given.
	set := func(flag, envName, fileVal string, apply func(string) error) error {
		if c.Flags().Changed(flag) {
			return nil
		}
		v, src := e.getenv(envName), envName
		if v == "" {
			v, src = fileVal, o.config+": "+flag
		}
		if v == "" {
			return nil
		}
		if err := apply(v); err != nil {
			return usageErr("%s=%q: %v", src, v, err)
		}
		return nil
	}
	itoa := func(n int) string {
		if n == 0 {
			return ""
		}
		return strconv.Itoa(n)
	}
	fileWorkers := ""
	if file.Workers != nil {
		fileWorkers = strconv.Itoa(*file.Workers)
	}
	o.workersSet = c.Flags().Changed("workers")
	for _, err := range []error{
		set("addr", "PYOCO_ADDR", file.Addr, setString(&o.addr)),
		set("flows", "PYOCO_FLOWS", file.Flows, setString(&o.flows)),
		set("redis", "PYOCO_REDIS_URL", file.Redis, setString(&o.redis)),
		set("namespace", "PYOCO_NAMESPACE", file.Namespace, setString(&o.namespace)),
		set("partitions", "PYOCO_PARTITIONS", itoa(file.Partitions), setInt(&o.partitions)),
		set("workers", "PYOCO_WORKERS", fileWorkers, func(v string) error { o.workersSet = true; return setInt(&o.workers)(v) }),
		set("concurrency", "PYOCO_CONCURRENCY", itoa(file.Concurrency), setInt(&o.concurrency)),
		set("lease", "PYOCO_LEASE", file.Lease, setDuration(&o.lease)),
		set("max-attempts", "PYOCO_MAX_ATTEMPTS", itoa(file.MaxAttempts), setInt(&o.maxAttempts)),
		set("retention", "PYOCO_RETENTION", file.Retention, setDuration(&o.retention)),
		set("shutdown-timeout", "PYOCO_SHUTDOWN_TIMEOUT", file.ShutdownTimeout, setDuration(&o.shutdownTimeout)),
		set("trace-url", "PYOCO_TRACE_URL", file.TraceURL, setString(&o.traceURL)),
	} {
		if err != nil {
			return err
		}
	}
	eps, err := webhooks.NewEndpoints(file.Webhooks, e.getenv, e.lookupEnv)
	if err != nil {
		if o.config != "" {
			return usageErr("%s: %v", o.config, err)
		}
		return usageErr("%v", err)
	}
	o.webhooks = eps
	if !o.workersSet {
		o.workers = 0
		if o.redis == "" {
			o.workers = 1
		}
	}
	switch {
	case o.workers < 0:
		return usageErr("--workers %d: want 0 or more", o.workers)
	case o.concurrency < 1:
		return usageErr("--concurrency %d: want 1 or more", o.concurrency)
	case o.partitions < 1 || o.partitions > redisstore.MaxPartitions:
		return usageErr("--partitions %d: want 1 to %d", o.partitions, redisstore.MaxPartitions)
	case o.lease < 100*time.Millisecond:
		return usageErr("--lease %s: want at least 100ms", o.lease)
	case o.maxAttempts < 1:
		return usageErr("--max-attempts %d: want 1 or more", o.maxAttempts)
	case o.workers == 0 && o.redis == "":
		return usageErr("--workers 0 without --redis: nothing would ever execute the runs")
	}
	return nil
}

// runServer serves the API until ctx ends (SIGTERM/SIGINT), then shuts down:
// every in-process worker stops taking runs at once, then the HTTP drain
// (open log streams end) and the workers' stops run in parallel under one
// deadline, --shutdown-timeout.
func runServer(ctx context.Context, e *env, o *serverOptions) error {
	log := slog.New(slog.NewTextHandler(e.stderr, nil))
	bg := context.WithoutCancel(ctx)

	var store engine.Store
	if o.redis == "" {
		log.Info("pyoco server: embedded in-memory store (no --redis): runs are lost when the server stops",
			"store", "memory", "workers", o.workers, "addr", o.addr)
		store = memstore.New()
	} else {
		log.Info("pyoco server: Redis store", "store", "redis", "redis", redactRedis(o.redis), "namespace", o.namespace, "partitions", o.partitions,
			"workers", o.workers, "addr", o.addr)
		// In-process workers share the client with the API: room for
		// both.
		var client redis.UniversalClient
		var err error
		if o.workers > 0 {
			client, err = openRedis(o.redis, workerPoolSize(o.workers, o.concurrency)+o.workers*o.partitions+10*runtime.GOMAXPROCS(0))
		} else {
			client, err = redisstore.OpenClient(o.redis)
		}
		if err != nil {
			return usageErr("--redis: %v", err)
		}
		defer client.Close()
		rs, err := redisstore.New(client, &redisstore.Config{Namespace: o.namespace, Retention: o.retention, Partitions: o.partitions})
		if err != nil {
			return usageErr("%v", err)
		}
		if err := rs.Ping(bg); errors.Is(err, engine.ErrUnavailable) {
			log.Warn("redis not reachable yet: the API answers 503 until it is", engine.LogKeyError, err)
		} else if err != nil {
			return err // the namespace is laid out in another partition count
		}
		store = rs
	}

	reg, rep, err := loadRegistry(bg, e, o.popts.strict)
	if rep != nil {
		for _, p := range rep.Problems() {
			log.Warn("plug-in problem", "problem", p)
		}
	}
	if err != nil {
		return usageErr("plug-ins: %v", err)
	}
	// On Redis the runs may execute on workers with tasks this process
	// lacks (SPEC §3): a use it does not know is a warning here, checked by
	// the worker that executes the run. In memory, this process is the
	// worker: its registry decides.
	var flowTasks engine.TaskLookup = reg
	if o.redis != "" {
		flowTasks = engine.AllowUnknownUse(reg)
	}
	flows, err := api.LoadFlowDir(o.flows, flowTasks)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		log.Warn("flows directory not found: no flows offered by name (flow_yaml still works)", "flows", o.flows)
		flows = nil
	case err != nil:
		return usageErr("--flows: %v", err)
	}
	var flowSource api.FlowSource
	if flows != nil {
		list, problems := flows.FlowList()
		for _, p := range problems {
			log.Warn("flow file not offered", "file", p.File, "line", p.Line, "column", p.Column, engine.LogKeyError, p.Message)
		}
		log.Info("flows loaded", "dir", o.flows, "flows", len(list), "errors", len(problems))
		flowSource = flows
	}

	tel, err := telemetry.Setup(bg, telemetry.Config{ConsoleWriter: e.stderr, Env: e.getenv})
	if err != nil {
		return usageErr("telemetry: %v", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(bg, 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(sctx); err != nil {
			log.Warn("telemetry shutdown", engine.LogKeyError, err)
		}
	}()
	newEngine := func(id string) (*engine.Engine, error) {
		return engine.New(store, reg, &engine.Config{WorkerID: id, TracerProvider: tel.TracerProvider,
			MeterProvider: tel.MeterProvider, LoggerProvider: tel.Logs(), Logger: log, LookupEnv: e.lookupEnv})
	}
	host, _ := os.Hostname()
	baseID := fmt.Sprintf("%s-%d", host, os.Getpid())
	eng, err := newEngine(baseID)
	if err != nil {
		return err
	}
	// Every engine of this process shares the meter provider: one start at
	// 0 covers the API's PENDING counts and the in-process workers' too.
	if flowSource != nil {
		list, _ := flowSource.FlowList()
		eng.CountersStart(list...)
	}

	// In-process workers, each with its own engine so that its id is the
	// worker_id of the runs it executes.
	var workers []*worker.Worker
	if o.workers > 0 {
		q, ok := store.(engine.Queue)
		if !ok {
			return usageErr("--workers %d: this store has no queue", o.workers)
		}
		for i := range o.workers {
			id := baseID
			if o.workers > 1 {
				id = fmt.Sprintf("%s-%d", baseID, i+1)
			}
			weng, err := newEngine(id)
			if err != nil {
				return err
			}
			w, err := worker.New(weng, q, &worker.Config{ID: id, Concurrency: o.concurrency, Lease: o.lease,
				MaxAttempts: o.maxAttempts, Logger: log, Host: host})
			if err != nil {
				return usageErr("%v", err)
			}
			workers = append(workers, w)
		}
	}

	// Webhooks: on Redis the delivery log is the store's (shared by every
	// server); in memory it lives in this process.
	var (
		whStore delivery.Store
		whLog   api.WebhookLog
	)
	if ws, ok := store.(delivery.Store); ok {
		whStore, whLog = ws, ws
	} else if o.redis != "" && len(o.webhooks) > 0 {
		return fmt.Errorf("webhooks: the Redis store %T keeps no delivery log", store)
	} else if len(o.webhooks) > 0 {
		ms := memstore.NewWebhookStore(store)
		whStore, whLog = ms, ms
	}
	var disp *webhooks.Dispatcher
	if len(o.webhooks) > 0 {
		if disp, err = webhooks.New(store, whStore, &webhooks.Config{Endpoints: o.webhooks, Retention: o.retention,
			Logger: log, TracerProvider: tel.TracerProvider, MeterProvider: tel.MeterProvider}); err != nil {
			return usageErr("webhooks: %v", err)
		}
	} else if err := webhooks.StartCounters(tel.MeterProvider); err != nil {
		return err
	}

	// Schedules of the --flows flows: every server runs them; the store's
	// claim makes each tick start one run however many servers there are.
	var flowList []*engine.Flow
	if flows != nil {
		flowList, _ = flows.FlowList()
	}
	sched, err := schedule.New(eng, flowList, &schedule.Config{Logger: log, MeterProvider: tel.MeterProvider})
	if err != nil {
		return usageErr("schedules: %v", err)
	}

	var pluginDoc any
	if rep != nil {
		pluginDoc = rep
	}
	srv, err := api.New(eng, &api.Config{
		Flows: flowSource, FlowTasks: flowTasks, Token: e.getenv("PYOCO_API_TOKEN"), Metrics: tel.Handler(), Plugins: pluginDoc, Logger: log,
		TracerProvider: tel.TracerProvider, MeterProvider: tel.MeterProvider, Webhooks: whLog, Schedules: sched,
	})
	if err != nil {
		return err
	}
	defer srv.Close()
	handler, err := withUI(srv.Handler(), o.traceURL)
	if err != nil {
		return usageErr("--trace-url: %v", err)
	}

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return usageErr("--addr %s: %v", o.addr, err)
	}
	baseCtx, cancelBase := context.WithCancel(bg)
	defer cancelBase()
	hs := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	// Open log streams (follow=true) never go idle: end them when the
	// shutdown starts so that Shutdown does not wait for them.
	hs.RegisterOnShutdown(cancelBase)

	for _, w := range workers {
		if err := w.Start(bg); err != nil {
			return err
		}
	}
	// stopWorkers stops every worker taking runs, then stops them in
	// parallel until sctx ends (runs still running then are handed back).
	var stopOnce sync.Once
	stopWorkers := func(sctx context.Context) {
		stopOnce.Do(func() {
			for _, w := range workers {
				w.StopTaking()
			}
			var wg sync.WaitGroup
			for _, w := range workers {
				wg.Go(func() {
					if err := w.Stop(sctx); err != nil {
						log.Info("worker stopped before its runs finished: they were handed back", engine.LogKeyWorker, w.ID(), "reason", err)
					}
				})
			}
			wg.Wait()
		})
	}
	defer func() {
		// On an early return (serving failed); after the signal path
		// below both do nothing more.
		sctx, cancel := context.WithTimeout(bg, o.shutdownTimeout)
		defer cancel()
		stopWorkers(sctx)
	}()
	if disp != nil {
		if err := disp.Start(bg); err != nil {
			return err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(bg, 10*time.Second)
			defer cancel()
			if err := disp.Stop(sctx); err != nil {
				log.Warn("webhook dispatcher stop", engine.LogKeyError, err)
			}
		}()
		for _, ep := range o.webhooks {
			log.Info("webhooks enabled", "url", ep.URL, "format", ep.Format, "events", ep.Events, "flows", ep.Flows)
		}
	}

	// The scheduler runs until the shutdown starts (or an early return).
	schedCtx, stopSched := context.WithCancel(bg)
	var schedDone sync.WaitGroup
	schedDone.Go(func() {
		if err := sched.Run(schedCtx); err != nil {
			log.Warn("schedules stopped", engine.LogKeyError, err)
		}
	})
	defer func() { stopSched(); schedDone.Wait() }()

	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	addr := ln.Addr().String()
	log.Info("serving the API", "url", "http://"+addr, "ui", "http://"+addr+"/ui/", "auth", e.getenv("PYOCO_API_TOKEN") != "", "metrics", "http://"+addr+"/metrics")
	if o.ready != nil {
		o.ready(addr)
	}

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("signal received: shutting down", "timeout", o.shutdownTimeout.String())
	stopSched()
	schedDone.Wait()
	for _, w := range workers {
		w.StopTaking()
	}
	sctx, cancel := context.WithTimeout(bg, o.shutdownTimeout)
	defer cancel()
	var stopping sync.WaitGroup
	stopping.Go(func() { stopWorkers(sctx) })
	if err := hs.Shutdown(sctx); err != nil {
		log.Warn("http shutdown", engine.LogKeyError, err)
		_ = hs.Close()
	}
	<-served
	stopping.Wait()
	log.Info("server stopped")
	return nil
}
