// Package telemetry wires pyoco's OpenTelemetry SDK: a tracer provider
// configured from the standard OTEL_* environment variables and a meter
// provider whose instruments are served as Prometheus metrics (SPEC §5, §6).
//
// [Setup] builds both providers; [Providers.Handler] serves /metrics from a
// private Prometheus registry; [Providers.Shutdown] flushes and stops them.
// Only cmd/pyoco calls Setup. Everything else takes the
// go.opentelemetry.io/otel/trace and go.opentelemetry.io/otel/metric API
// interfaces, so tests can hand in their own providers.
//
// # Traces
//
// Setup reads, through [Config.Env]:
//
//   - OTEL_SERVICE_NAME (default [Config.ServiceName], else "pyoco") and
//     OTEL_RESOURCE_ATTRIBUTES.
//   - OTEL_TRACES_EXPORTER: "otlp" (default), "console", "none", or a
//     comma-separated list of them. An unknown value is an error.
//   - OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT. With
//     the otlp exporter and neither variable set, nothing is exported and
//     nothing complains, yet spans are still sampled and get valid ids, so
//     trace ids are still made and stored. An http:// endpoint is dialled in
//     plain text, https:// with TLS.
//   - OTEL_EXPORTER_OTLP_PROTOCOL / OTEL_EXPORTER_OTLP_TRACES_PROTOCOL:
//     "http/protobuf" (default, as the OpenTelemetry specification
//     recommends; collectors listen on :4318) or "grpc" (:4317).
//   - OTEL_EXPORTER_OTLP_HEADERS / OTEL_EXPORTER_OTLP_TRACES_HEADERS.
//   - OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (default
//     parentbased_always_on).
//
// Those variables are resolved here and handed to the exporters as explicit
// options, so a custom [Config.Env] is honoured. The remaining OTLP and SDK
// tunables (OTEL_EXPORTER_OTLP_TIMEOUT, _COMPRESSION, _CERTIFICATE, OTEL_BSP_*,
// OTEL_METRICS_EXEMPLAR_FILTER) are read by the SDK itself from the process
// environment.
//
// The tracer provider always uses [engine.IDGenerator], so the trace id fixed
// when a run was submitted is the one its spans carry.
//
// # Metrics
//
// Instruments are translated to Prometheus names with the
// UnderscoreEscapingWithSuffixes strategy: "pyoco.runs" (counter) becomes
// pyoco_runs_total, "pyoco.run.duration" with unit "s" becomes
// pyoco_run_duration_seconds, and "pyoco.runs.in_progress" (UpDownCounter)
// becomes the gauge pyoco_runs_in_progress. Scope labels (otel_scope_*) are
// left out, and so is target_info unless [Config.TargetInfo] is set. Every
// histogram with unit "s" uses [Config.HistogramBoundaries]. Histogram
// samples recorded inside a sampled span carry trace_id/span_id exemplars,
// served when the scraper asks for OpenMetrics.
//
// This package may import engine, never api, webhooks or plugins.
package telemetry
