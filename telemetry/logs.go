package telemetry

import (
	"context"
	"fmt"
	"maps"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
)

const (
	envLogsExporter     = "OTEL_LOGS_EXPORTER"
	envOTLPLogsEndpoint = "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"
	envOTLPLogsProtocol = "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL"
	envOTLPLogsHeaders  = "OTEL_EXPORTER_OTLP_LOGS_HEADERS"
	otlpHTTPLogsPath    = "/v1/logs"
)

var logsSignal = otlpSignal{envOTLPLogsEndpoint, envOTLPLogsProtocol, envOTLPLogsHeaders, otlpHTTPLogsPath}

// readLogsConfig resolves OTEL_LOGS_EXPORTER (otlp, the default, or none)
// and the OTLP variables of logs. nil, nil: no log records are exported
// (none asked, or no endpoint set).
func readLogsConfig(env func(string) string) (*otlpConfig, error) {
	exporters := strings.TrimSpace(env(envLogsExporter))
	if exporters == "" {
		exporters = exporterOTLP
	}
	var oc *otlpConfig
	for name := range strings.SplitSeq(exporters, ",") {
		switch strings.ToLower(strings.TrimSpace(name)) {
		case exporterOTLP:
			var err error
			if oc, err = readOTLPSignal(env, logsSignal); err != nil {
				return nil, err
			}
		case exporterNone:
		default:
			return nil, fmt.Errorf("telemetry: %s: unknown exporter %q, want otlp or none", envLogsExporter, name)
		}
	}
	return oc, nil
}

// newLoggerProvider makes the logger provider of task log records, batching
// them to the OTLP exporter oc asks for, with the process's resource.
func newLoggerProvider(ctx context.Context, oc otlpConfig, res *resource.Resource) (*sdklog.LoggerProvider, error) {
	var (
		e   sdklog.Exporter
		err error
	)
	switch oc.protocol {
	case protocolGRPC:
		opts := []otlploggrpc.Option{otlploggrpc.WithEndpointURL(oc.endpoint)}
		if oc.headers != nil {
			opts = append(opts, otlploggrpc.WithHeaders(maps.Clone(oc.headers)))
		}
		e, err = otlploggrpc.New(ctx, opts...)
	default:
		opts := []otlploghttp.Option{otlploghttp.WithEndpointURL(oc.endpoint)}
		if oc.headers != nil {
			opts = append(opts, otlploghttp.WithHeaders(maps.Clone(oc.headers)))
		}
		e, err = otlploghttp.New(ctx, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTLP %s log exporter: %w", oc.protocol, err)
	}
	return sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(sdklog.NewBatchProcessor(e))), nil
}
