// Package delivery provides the types of the webhook delivery log: a
// [Delivery] and its [Status], the parameters of the [Store] methods, and
// [Store] itself, the seam between the webhooks dispatcher and the stores
// that keep deliveries (redisstore.Store on Redis, memstore.Store in memory).
//
// It is a leaf: it imports only engine and the standard library, so that
// webhooks, api, redisstore and engine/memstore can all name its types
// without importing each other. Its conformance suite is
// [github.com/pyoco/pyoco/webhooks/delivery/deliverytest].
package delivery
