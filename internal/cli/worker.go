package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/pyoco/pyoco/api"
	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/redisstore"
	"github.com/pyoco/pyoco/telemetry"
	"github.com/pyoco/pyoco/worker"
)

// workerOptions are the settings of `pyoco worker` (flag > env > default,
// SPEC §10).
type workerOptions struct {
	redis           string
	namespace       string
	partitions      int
	concurrency     int
	lease           time.Duration
	maxAttempts     int
	metricsAddr     string
	flows           string
	flowsSet        bool // --flows or PYOCO_FLOWS given
	retention       time.Duration
	shutdownTimeout time.Duration
	popts           pluginOptions
}

func newWorkerCmd(e *env) *cobra.Command {
	var o workerOptions
	c := &cobra.Command{
		Use:   "worker",
		Short: "Execute queued runs from Redis (scale out with more workers)",
		Long: `Take runs from the Redis queue and execute them, up to --concurrency at once.
A worker needs no flow files: it runs the flow snapshot stored with each run,
with the tasks built into this binary and the exec plug-ins in PYOCO_PLUGIN_PATH.

Runs of a worker that stops heart-beating are taken over by other workers
after --lease and resumed; after --max-attempts takeovers a run ends FAILED.
SIGTERM (or Ctrl+C) stops taking runs, lets the running ones finish for up to
--shutdown-timeout and hands the rest back to other workers; a second signal
exits at once. Each worker serves its own Prometheus /metrics on
--metrics-addr ("off" disables it). The flows of --flows, when that
directory exists, are only read so that their run and task counters start
at 0 (a worker executes the snapshot stored with each run, of any flow).

Settings: flag > environment (PYOCO_REDIS_URL, PYOCO_NAMESPACE,
PYOCO_CONCURRENCY, PYOCO_LEASE, PYOCO_MAX_ATTEMPTS, PYOCO_METRICS_ADDR,
PYOCO_FLOWS, PYOCO_RETENTION, PYOCO_SHUTDOWN_TIMEOUT) > default.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(c *cobra.Command, args []string) error {
			if err := o.resolve(c, e); err != nil {
				return err
			}
			return runWorker(c.Context(), e, &o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.redis, "redis", "", "Redis URL (redis://, rediss://) or comma-separated Cluster host:port list [PYOCO_REDIS_URL]")
	f.StringVar(&o.namespace, "namespace", redisstore.DefaultNamespace, "key namespace [PYOCO_NAMESPACE]")
	f.IntVar(&o.partitions, "partitions", 1, "partitions of the namespace (as the server's) [PYOCO_PARTITIONS]")
	f.IntVar(&o.concurrency, "concurrency", worker.DefaultConcurrency, "runs executed at once [PYOCO_CONCURRENCY]")
	f.DurationVar(&o.lease, "lease", worker.DefaultLease, "lease before a silent worker's runs are taken over [PYOCO_LEASE]")
	f.IntVar(&o.maxAttempts, "max-attempts", worker.DefaultMaxAttempts, "workers that may take a run before it fails [PYOCO_MAX_ATTEMPTS]")
	f.StringVar(&o.metricsAddr, "metrics-addr", ":9464", `address of this worker's /metrics ("off" disables) [PYOCO_METRICS_ADDR]`)
	f.StringVar(&o.flows, "flows", "./flows", "directory of flow files whose counters start at 0 (optional: runs carry their flow) [PYOCO_FLOWS]")
	f.DurationVar(&o.retention, "retention", redisstore.DefaultRetention, "how long finished runs are kept [PYOCO_RETENTION]")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 25*time.Second, "how long a stopping worker lets running runs finish before handing them back [PYOCO_SHUTDOWN_TIMEOUT]")
	o.popts.register(c)
	return c
}

// resolve applies the environment to the flags not given, and checks.
func (o *workerOptions) resolve(c *cobra.Command, e *env) error {
	fromEnv := func(flag, name string, set func(string) error) error {
		if c.Flags().Changed(flag) {
			return nil
		}
		v := e.getenv(name)
		if v == "" {
			return nil
		}
		if err := set(v); err != nil {
			return usageErr("%s=%q: %v", name, v, err)
		}
		return nil
	}
	for _, err := range []error{
		fromEnv("redis", "PYOCO_REDIS_URL", setString(&o.redis)),
		fromEnv("namespace", "PYOCO_NAMESPACE", setString(&o.namespace)),
		fromEnv("partitions", "PYOCO_PARTITIONS", setInt(&o.partitions)),
		fromEnv("concurrency", "PYOCO_CONCURRENCY", setInt(&o.concurrency)),
		fromEnv("lease", "PYOCO_LEASE", setDuration(&o.lease)),
		fromEnv("max-attempts", "PYOCO_MAX_ATTEMPTS", setInt(&o.maxAttempts)),
		fromEnv("metrics-addr", "PYOCO_METRICS_ADDR", setString(&o.metricsAddr)),
		fromEnv("flows", "PYOCO_FLOWS", setString(&o.flows)),
		fromEnv("retention", "PYOCO_RETENTION", setDuration(&o.retention)),
		fromEnv("shutdown-timeout", "PYOCO_SHUTDOWN_TIMEOUT", setDuration(&o.shutdownTimeout)),
	} {
		if err != nil {
			return err
		}
	}
	o.flowsSet = c.Flags().Changed("flows") || e.getenv("PYOCO_FLOWS") != ""
	switch {
	case o.redis == "":
		return usageErr("pyoco worker needs Redis: give --redis URL or set PYOCO_REDIS_URL (without Redis, 'pyoco server' runs in-process workers)")
	case o.concurrency < 1:
		return usageErr("--concurrency %d: want 1 or more", o.concurrency)
	case o.partitions < 1 || o.partitions > redisstore.MaxPartitions:
		return usageErr("--partitions %d: want 1 to %d", o.partitions, redisstore.MaxPartitions)
	case o.lease < 100*time.Millisecond:
		return usageErr("--lease %s: want at least 100ms", o.lease)
	case o.maxAttempts < 1:
		return usageErr("--max-attempts %d: want 1 or more", o.maxAttempts)
	case o.shutdownTimeout < 0:
		return usageErr("--shutdown-timeout %s: want 0 or more", o.shutdownTimeout)
	}
	return nil
}

// runWorker runs a worker until ctx ends (the first SIGTERM/SIGINT), then
// stops it gracefully. Cancelling ctx never cancels runs: they finish or
// are handed back.
func runWorker(ctx context.Context, e *env, o *workerOptions) error {
	log := slog.New(slog.NewTextHandler(e.stderr, nil))
	client, err := openRedis(o.redis, workerPoolSize(1, o.concurrency)+o.partitions) // + an idle worker's blocked read per partition
	if err != nil {
		return usageErr("--redis: %v", err)
	}
	defer client.Close()
	store, err := redisstore.New(client, &redisstore.Config{Namespace: o.namespace, Retention: o.retention, Partitions: o.partitions})
	if err != nil {
		return usageErr("%v", err)
	}
	host, _ := os.Hostname()
	id := fmt.Sprintf("%s-%d", host, os.Getpid())
	log.Info("pyoco worker starting", "store", "redis", "redis", redactRedis(o.redis), "namespace", o.namespace, "partitions", o.partitions,
		engine.LogKeyWorker, id, "concurrency", o.concurrency, "lease", o.lease.String(), "max_attempts", o.maxAttempts)

	bg := context.WithoutCancel(ctx)
	reg, err := newRegistry(bg, e, o.popts.strict)
	if err != nil {
		return err
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
	eng, err := engine.New(store, reg, &engine.Config{
		WorkerID:       id,
		TracerProvider: tel.TracerProvider,
		MeterProvider:  tel.MeterProvider,
		LoggerProvider: tel.Logs(),
		Logger:         log,
		LookupEnv:      e.lookupEnv,
	})
	if err != nil {
		return err
	}
	startCounters(log, eng, o.flows, o.flowsSet)
	w, err := worker.New(eng, store, &worker.Config{
		ID: id, Concurrency: o.concurrency, Lease: o.lease, MaxAttempts: o.maxAttempts, Logger: log, Host: host,
	})
	if err != nil {
		return usageErr("%v", err)
	}

	if o.metricsAddr != "" && o.metricsAddr != "off" {
		ln, err := net.Listen("tcp", o.metricsAddr)
		if err != nil {
			return usageErr("--metrics-addr %s: %v", o.metricsAddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", tel.Handler())
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		served := make(chan struct{})
		go func() {
			defer close(served)
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server", engine.LogKeyError, err)
			}
		}()
		defer func() {
			sctx, cancel := context.WithTimeout(bg, 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
			<-served
		}()
		log.Info("serving metrics", "addr", "http://"+ln.Addr().String()+"/metrics")
	}
	if err := store.Ping(bg); errors.Is(err, engine.ErrUnavailable) {
		log.Warn("redis not reachable yet: the worker retries until it is", engine.LogKeyError, err)
	} else if err != nil {
		return err // the namespace is laid out in another partition count
	}

	if err := w.Start(bg); err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("signal received: stopping gracefully", "shutdown_timeout", o.shutdownTimeout.String())
	sctx, cancel := context.WithTimeout(bg, o.shutdownTimeout)
	defer cancel()
	if err := w.Stop(sctx); err != nil {
		log.Info("runs handed back to other workers", "reason", err)
	}
	return nil
}

// redactRedis hides a password in a Redis URL for logs.
func redactRedis(spec string) string {
	if u, err := url.Parse(spec); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			return u.Redacted()
		}
	}
	return spec
}

// workerPoolSize is the Redis connections that n workers of concurrency runs
// each may use at once: one per run executing (its task writes, its cancel
// watch), and the blocking pop, the heartbeat, the reclaimer and an
// acknowledgement of each worker.
func workerPoolSize(n, concurrency int) int { return n * (concurrency + 4) }

// openRedis is [redisstore.OpenClient] with a connection pool of at least
// minPool connections (per node on a Cluster): go-redis's default pool size
// if that is larger, or the URL's pool_size if it gives a larger one.
func openRedis(spec string, minPool int) (redis.UniversalClient, error) {
	s := strings.TrimSpace(spec)
	isURL := strings.Contains(s, "://")
	switch {
	case s == "" || isURL && strings.Contains(s, ","):
		return redisstore.OpenClient(spec) // its error
	case strings.Contains(s, ","):
		// A host:port list: a Cluster, built as OpenClient builds it.
		var addrs []string
		for a := range strings.SplitSeq(s, ",") {
			if a = strings.TrimSpace(a); a != "" {
				addrs = append(addrs, a)
			}
		}
		if len(addrs) != 1 {
			if len(addrs) == 0 {
				return redisstore.OpenClient(spec)
			}
			return redis.NewUniversalClient(&redis.UniversalOptions{Addrs: addrs, DialTimeout: 2 * time.Second,
				IsClusterMode: true, PoolSize: max(minPool, 5*runtime.GOMAXPROCS(0))}), nil
		}
		s = addrs[0]
	}
	if !isURL {
		s = "redis://" + s // host:port, as a URL to carry the pool size
	}
	u, err := url.Parse(s)
	if err != nil {
		return redisstore.OpenClient(spec) // its error, or its own parse
	}
	q := u.Query()
	size := max(minPool, 10*runtime.GOMAXPROCS(0))
	if v := q.Get("pool_size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return redisstore.OpenClient(spec) // its error
		}
		size = max(n, minPool)
	}
	q.Set("pool_size", strconv.Itoa(size))
	u.RawQuery = q.Encode()
	return redisstore.OpenClient(u.String())
}

// startCounters starts the counters of the flows of dir at 0 (see
// [engine.Engine.CountersStart]). A worker needs no flow files, so a
// directory that does not exist is fine unless it was asked for (given),
// and files that do not load are only counted in the log.
func startCounters(log *slog.Logger, eng *engine.Engine, dir string, given bool) {
	flows, err := api.LoadFlowDir(dir, eng.Registry())
	if err != nil {
		if given || !errors.Is(err, fs.ErrNotExist) {
			log.Warn("flows not read: their counters start at their first run", "flows", dir, engine.LogKeyError, err)
		}
		return
	}
	list, problems := flows.FlowList()
	eng.CountersStart(list...)
	log.Info("counters started at 0", "flows", dir, "count", len(list), "not_loaded", len(problems))
}
