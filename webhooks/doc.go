// Package webhooks sends signed, durable, retried notifications when runs
// end (SPEC §8).
//
// A [Dispatcher] reads the run-events stream through a delivery.Store
// (package webhooks/delivery) — on Redis (redisstore.Store) with one
// consumer group per endpoint, so deliveries survive a restart and several
// servers share the work; in memory (memstore.WebhookStore) for a single
// process — and turns each terminal event (run.completed,
// run.failed, run.cancelled) into one delivery per matching [Endpoint],
// with a stable "msg_…" ID. Deliveries are sent in the Standard Webhooks
// format (signed with HMAC-SHA256, see [Sign]) or as a Slack message, and
// retried on a back-off schedule ([DefaultRetrySchedule]) until a 2xx
// answer; the delivery log keeps each one's state.
//
// This package may import engine, never api, plugins, telemetry or the
// stores: the command line wires the store in.
package webhooks
