// Package e2e holds end-to-end tests only: they build the pyoco binary,
// start real `pyoco worker` processes against a real redis-server
// (internal/redistest), kill them with SIGKILL, stop and restart Redis, and
// check that every run still ends as it should. TestStack runs the real
// observability stack (Redis, `pyoco server`, two workers, Prometheus and
// Jaeger) and checks metrics, traces, webhooks and every dashboard query.
// It has no non-test code and nothing may import it.
package e2e
