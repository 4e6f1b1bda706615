package engine

import "go.opentelemetry.io/otel/attribute"

// Attribute keys of webhook delivery spans.
const (
	AttrWebhookID      = attribute.Key("pyoco.webhook.id")
	AttrWebhookEvent   = attribute.Key("pyoco.webhook.event")
	AttrWebhookAttempt = attribute.Key("pyoco.webhook.attempt")
)
