package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// startTimeout bounds the wait for a new server to answer PING.
	startTimeout = 10 * time.Second
	// stopTimeout is how long a server gets to exit on SIGTERM before SIGKILL.
	stopTimeout = 5 * time.Second
)

// Server is one redis-server process on a loopback port, with its own
// directory. Its methods are safe for concurrent use.
type Server struct {
	port  int
	dir   string
	extra []string // arguments after the common ones

	mu  sync.Mutex
	cmd *exec.Cmd // nil while stopped
}

// StartServer starts a dedicated redis-server for t alone (persistence off,
// free loopback port) and stops it in t.Cleanup. Use it for tests that stop
// and restart Redis; others share [Client]'s server. extra are more
// redis-server arguments, which override the defaults (e.g. "--appendonly",
// "yes" keeps the data across [Server.Restart]). It fails t if redis-server
// is not on PATH or does not start.
func StartServer(t testing.TB, extra ...string) *Server {
	t.Helper()
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	s, err := newServer(dir, extra...)
	if err != nil {
		_ = os.RemoveAll(dir)
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("redistest: %v", err)
		}
		_ = os.RemoveAll(dir)
	})
	return s
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Options returns client options for the server, with short timeouts that
// suit tests.
func (s *Server) Options() *redis.Options {
	return &redis.Options{
		Addr:         s.Addr(),
		DialTimeout:  2 * time.Second,
		ReadTimeout:  5 * time.Second,
		WriteTimeout: 5 * time.Second,
	}
}

// Stop stops the server (SIGTERM, then SIGKILL) and waits for it to exit.
// Its port stays reserved for [Server.Restart] only by convention: nothing
// else in the test binary picks it.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if err := s.stop(); err != nil {
		t.Fatalf("redistest: %v", err)
	}
}

// Restart starts a stopped server again on the same port and waits until it
// answers PING. The data is gone, unless the server was started with
// persistence (e.g. "--appendonly", "yes").
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.start(); err != nil {
		t.Fatalf("redistest: %v", err)
	}
}

// newServer picks a free port and starts a server in dir, retrying with
// another port if the chosen one was taken meanwhile.
func newServer(dir string, extra ...string) (*Server, error) {
	var errs []error
	for range 3 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s := &Server{port: port, dir: dir, extra: expand(extra, port)}
		if err := s.start(); err != nil {
			errs = append(errs, err)
			continue
		}
		return s, nil
	}
	return nil, errors.Join(errs...)
}

// expand replaces "$PORT" in args with port.
func expand(args []string, port int) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = strings.ReplaceAll(a, "$PORT", strconv.Itoa(port))
	}
	return out
}

// start runs redis-server and waits until it answers PING.
func (s *Server) start() error {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return fmt.Errorf("redis-server is not on PATH (install Redis >= 7 or set PYOCO_TEST_REDIS_URL): %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return fmt.Errorf("redis-server on %s: already running", s.Addr())
	}
	logPath := filepath.Join(s.dir, "redis-"+strconv.Itoa(s.port)+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child has its own descriptor
	args := append([]string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--daemonize", "no",
	}, s.extra...)
	cmd := exec.Command(bin, args...)
	// *os.File outputs: exec starts no copying goroutines.
	cmd.Stdout, cmd.Stderr = logFile, logFile
	setProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server on %s: %w", s.Addr(), err)
	}
	if err := waitPing(s.Addr(), startTimeout); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return fmt.Errorf("redis-server on %s did not start: %w\n%s", s.Addr(), err, tail(logPath))
	}
	s.cmd = cmd
	return nil
}

// stop terminates the server and reaps it; a stopped server is left alone.
func (s *Server) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := s.cmd
	if cmd == nil {
		return nil
	}
	s.cmd = nil
	_ = cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-exited:
	case <-time.After(stopTimeout):
		_ = cmd.Process.Kill()
		<-exited
	}
	return nil
}

// waitPing dials addr until it answers PING with PONG, or timeout passes.
func waitPing(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = ping(addr); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}

// ping sends one inline PING over a fresh connection.
func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// reserved are ports the helper never uses: a developer's own Redis (and its
// cluster bus port).
var reserved = map[int]bool{6379: true, 16379: true}

// picked remembers ports handed out, so that two servers of one test binary
// never get the same port (the kernel may reuse a just-closed one).
var picked = struct {
	sync.Mutex
	m map[int]bool
}{m: map[int]bool{}}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		picked.Lock()
		ok := !reserved[port] && !picked.m[port]
		if ok {
			picked.m[port] = true
		}
		picked.Unlock()
		if ok {
			return port, nil
		}
	}
	return 0, errors.New("no free loopback port")
}

// tail returns the last lines of a log file, for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}
