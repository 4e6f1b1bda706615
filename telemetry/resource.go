package telemetry

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
)

const (
	envServiceName        = "OTEL_SERVICE_NAME"
	envResourceAttributes = "OTEL_RESOURCE_ATTRIBUTES"

	keyServiceName    = attribute.Key("service.name")
	keyServiceVersion = attribute.Key("service.version")

	defaultServiceName = "pyoco"
)

// newResource describes this process. Later attributes win: the Config
// values, then OTEL_RESOURCE_ATTRIBUTES, then OTEL_SERVICE_NAME, which the
// OpenTelemetry specification ranks above service.name in the attribute list.
func newResource(ctx context.Context, cfg Config) (*resource.Resource, error) {
	name := cfg.ServiceName
	if name == "" {
		name = defaultServiceName
	}
	attrs := []attribute.KeyValue{keyServiceName.String(name)}
	if cfg.ServiceVersion != "" {
		attrs = append(attrs, keyServiceVersion.String(cfg.ServiceVersion))
	}
	envAttrs, err := parseKeyValues(cfg.Env(envResourceAttributes))
	if err != nil {
		return nil, fmt.Errorf("telemetry: %s: %w", envResourceAttributes, err)
	}
	for _, kv := range envAttrs {
		attrs = append(attrs, attribute.String(kv[0], kv[1]))
	}
	if s := strings.TrimSpace(cfg.Env(envServiceName)); s != "" {
		attrs = append(attrs, keyServiceName.String(s))
	}
	// resource.WithFromEnv and resource.Default are avoided on purpose: they
	// read os.Getenv, not cfg.Env.
	res, err := resource.New(ctx, resource.WithTelemetrySDK(), resource.WithAttributes(attrs...))
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	return res, nil
}

// parseKeyValues parses the "k1=v1,k2=v2" lists of OTEL_RESOURCE_ATTRIBUTES
// and OTEL_EXPORTER_OTLP_HEADERS: keys and values are trimmed, values are
// percent-decoded, empty members are skipped, and a member without "=" or
// with an empty key is an error.
func parseKeyValues(s string) ([][2]string, error) {
	var out [][2]string
	for member := range strings.SplitSeq(s, ",") {
		if strings.TrimSpace(member) == "" {
			continue
		}
		k, v, ok := strings.Cut(member, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("malformed member %q, want key=value", member)
		}
		dv, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("value of %q: %w", k, err)
		}
		out = append(out, [2]string{k, dv})
	}
	return out, nil
}
