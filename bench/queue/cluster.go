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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/redisstore"
	"github.com/pyoco/pyoco/worker"
)

var (
	clusterMode       = flag.Bool("cluster", false, "measure a partitioned namespace on private Redis Clusters of 1 and 3 masters instead (drain runs/s, Redis CPU per run on each master)")
	clusterPartitions = flag.Int("partitions", 6, "with -cluster: the namespace's partitions")
	clusterWorkers    = flag.Int("workers", 2, "with -cluster: workers draining")
)

// clusterBench drains n single-noop runs of a namespace of -partitions
// partitions on a 1-master and a 3-master Cluster and prints, for each,
// runs/s and the CPU each master used per run (INFO cpu before and after).
func clusterBench(ctx context.Context) {
	fmt.Printf("pyoco on Redis Cluster: n=%d, partitions=%d, %d workers × concurrency %d\n\n", *n, *clusterPartitions, *clusterWorkers, *concurrency)
	type result struct {
		masters int
		perSec  float64
		cpu     []float64 // µs per run, per master
		parts   []int     // partitions per master
	}
	var results []result
	for _, masters := range []int{1, 3} {
		addrs, stop, err := startCluster(ctx, masters)
		if err != nil {
			log.Fatal(err)
		}
		perSec, cpu, parts := clusterDrain(ctx, addrs)
		stop()
		results = append(results, result{masters, perSec, cpu, parts})
	}
	fmt.Printf("\n%-10s %10s %18s  %s\n", "masters", "runs/s", "Redis CPU µs/run", "per master (partitions): µs/run")
	for _, r := range results {
		total := 0.0
		var per []string
		for i, c := range r.cpu {
			total += c
			per = append(per, fmt.Sprintf("m%d (%d): %.0f", i+1, r.parts[i], c))
		}
		fmt.Printf("%-10d %10.0f %18.0f  %s\n", r.masters, r.perSec, total, strings.Join(per, ", "))
	}
}

// clusterDrain submits n runs into a fresh namespace, drains them and
// returns runs/s, each master's CPU µs per run and how many of the
// namespace's partitions each master serves.
func clusterDrain(ctx context.Context, addrs []string) (perSec float64, cpu []float64, parts []int) {
	ns := balancedNamespace(len(addrs))
	nodes := make([]*redis.Client, len(addrs))
	for i, a := range addrs {
		nodes[i] = redis.NewClient(&redis.Options{Addr: a})
		defer nodes[i].Close()
	}
	sub, subStore, closeSub := newClusterEngine(ctx, addrs, ns, "submitter", nil)
	defer closeSub()
	parts = spread(subStore, len(addrs))
	flow, err := engine.LoadFlow("bench.yaml", []byte(flowSrc), sub.Registry())
	if err != nil {
		log.Fatal(err)
	}
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 32 {
		wg.Go(func() {
			for next.Add(1) <= int64(*n) {
				if _, err := sub.Submit(ctx, &engine.SubmitParams{Flow: flow}); err != nil {
					log.Fatal(err)
				}
			}
		})
	}
	wg.Wait()

	var finished atomic.Int64
	done := make(chan struct{})
	observe := func(p engine.Progress) {
		if p.Kind == engine.ProgressRunFinished && finished.Add(1) == int64(*n) {
			close(done)
		}
	}
	var ws []*worker.Worker
	var closers []func()
	for i := range *clusterWorkers {
		eng, store, closeFn := newClusterEngine(ctx, addrs, ns, fmt.Sprintf("bench-w%d", i), observe)
		w, err := worker.New(eng, store, &worker.Config{Concurrency: *concurrency})
		if err != nil {
			log.Fatal(err)
		}
		ws = append(ws, w)
		closers = append(closers, closeFn)
	}
	cpu0 := make([]float64, len(nodes))
	for i, nd := range nodes {
		cpu0[i] = redisCPU(ctx, nd)
	}
	start := time.Now()
	for _, w := range ws {
		if err := w.Start(ctx); err != nil {
			log.Fatal(err)
		}
	}
	<-done
	elapsed := time.Since(start)
	cpu = make([]float64, len(nodes))
	for i, nd := range nodes {
		cpu[i] = 1e6 * (redisCPU(ctx, nd) - cpu0[i]) / float64(*n)
	}
	perSec = float64(*n) / elapsed.Seconds()
	fmt.Printf("(%d master(s): %.0f runs/s in %s; per master CPU µs/run %v)\n", len(addrs), perSec, elapsed.Round(time.Millisecond), roundAll(cpu))
	for _, w := range ws {
		_ = w.Stop(ctx)
	}
	for _, c := range closers {
		c()
	}
	return perSec, cpu, parts
}

// spread counts the store's partitions on each of masters masters (by
// startCluster's equal slot ranges).
func spread(s interface {
	Partitions() int
	PartitionKeyTag(int) string
}, masters int) []int {
	parts := make([]int, masters)
	for k := range s.Partitions() {
		parts[clusterSlot(s.PartitionKeyTag(k))*masters/16384]++
	}
	return parts
}

// balancedNamespace returns a fresh namespace whose partitions fall evenly
// on masters masters (as an operator would place them, by resharding
// slots or choosing the name; with many partitions they spread evenly
// anyway), so that the per-master split shows how the work divides.
func balancedNamespace(masters int) string {
	base := fmt.Sprintf("bench-cluster-%d", time.Now().UnixNano())
	for i := 0; ; i++ {
		ns := base + "-" + strconv.Itoa(i)
		c := redis.NewClient(&redis.Options{}) // never used: the store only names keys here
		s, err := redisstore.New(c, &redisstore.Config{Namespace: ns, Partitions: *clusterPartitions})
		_ = c.Close()
		if err != nil {
			log.Fatal(err)
		}
		parts := spread(s, masters)
		lo, hi := parts[0], parts[0]
		for _, p := range parts {
			lo, hi = min(lo, p), max(hi, p)
		}
		if hi-lo <= 1 || i > 10000 {
			return ns
		}
	}
}

func roundAll(v []float64) []int {
	out := make([]int, len(v))
	for i, x := range v {
		out[i] = int(x + 0.5)
	}
	return out
}

// newClusterEngine is newEngine on a Cluster client and a partitioned
// store.
func newClusterEngine(ctx context.Context, addrs []string, ns, id string, observe func(engine.Progress)) (*engine.Engine, *redisstore.Store, func()) {
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, PoolSize: 64})
	return newEngineOn(ctx, client, &redisstore.Config{Namespace: ns, Partitions: *clusterPartitions}, id, observe)
}

// clusterSlot is the Cluster hash slot of a key whose hash tag is tag
// ("{...}"): CRC16 of the tag's content modulo 16384.
func clusterSlot(tag string) int {
	s := strings.TrimSuffix(strings.TrimPrefix(tag, "{"), "}")
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}

// startCluster starts masters cluster-enabled redis-servers on free
// loopback ports (no persistence), gives each an equal range of the 16384
// slots, joins them (CLUSTER MEET) and waits until every node reports a
// healthy cluster. It returns their addresses and a stop function.
func startCluster(ctx context.Context, masters int) ([]string, func(), error) {
	dir, err := os.MkdirTemp("", "pyoco-bench-cluster-")
	if err != nil {
		return nil, nil, err
	}
	var cmds []*exec.Cmd
	stop := func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
		_ = os.RemoveAll(dir)
	}
	var addrs []string
	var buses []int
	var clients []*redis.Client
	defer func() {
		for _, c := range clients {
			_ = c.Close()
		}
	}()
	for i := range masters {
		port, err := freePort()
		if err != nil {
			stop()
			return nil, nil, err
		}
		bus, err := freePort()
		if err != nil {
			stop()
			return nil, nil, err
		}
		cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(bus), "--cluster-config-file", filepath.Join(dir, fmt.Sprintf("nodes-%d.conf", port)),
			"--cluster-node-timeout", "5000", "--dir", dir, "--logfile", filepath.Join(dir, fmt.Sprintf("redis-%d.log", i)))
		if err := cmd.Start(); err != nil {
			stop()
			return nil, nil, fmt.Errorf("start redis-server (is it on PATH?): %w", err)
		}
		cmds = append(cmds, cmd)
		buses = append(buses, bus)
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		addrs = append(addrs, addr)
		c := redis.NewClient(&redis.Options{Addr: addr})
		clients = append(clients, c)
		for try := 0; c.Ping(ctx).Err() != nil; try++ {
			if try > 200 {
				stop()
				return nil, nil, fmt.Errorf("redis-server on %s did not start", addr)
			}
			time.Sleep(25 * time.Millisecond)
		}
	}
	for i, c := range clients {
		lo, hi := i*16384/masters, (i+1)*16384/masters-1
		if err := c.ClusterAddSlotsRange(ctx, lo, hi).Err(); err != nil {
			stop()
			return nil, nil, fmt.Errorf("cluster addslotsrange on %s: %w", addrs[i], err)
		}
		if i > 0 {
			host, port, _ := net.SplitHostPort(addrs[0])
			if err := c.Do(ctx, "cluster", "meet", host, port, buses[0]).Err(); err != nil {
				stop()
				return nil, nil, fmt.Errorf("cluster meet from %s: %w", addrs[i], err)
			}
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, c := range clients {
		for {
			info, _ := c.ClusterInfo(ctx).Result()
			if strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(masters)) {
				break
			}
			if time.Now().After(deadline) {
				stop()
				return nil, nil, fmt.Errorf("cluster of %d masters not ready: %s", masters, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return addrs, stop, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
