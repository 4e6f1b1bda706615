package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/webhooks/delivery"
)

// webhookGroup is the consumer group of earlier versions, shared by every
// dispatcher; now each endpoint has its own ([webhookGroupName]).
const webhookGroup = "webhooks"

// webhookGroupName is the consumer group of an endpoint on the run-events
// stream ("webhooks:<endpoint key>"); each dispatcher knowing the endpoint
// is a consumer. "" is the legacy shared group.
func webhookGroupName(endpoint string) string {
	if endpoint == "" {
		return webhookGroup
	}
	return webhookGroup + ":" + endpoint
}

// maxAutoClaimScans bounds the XAUTOCLAIM calls of one WebhookEventRead.
const maxAutoClaimScans = 10

// defaultWebhookListLimit is WebhookDeliveryList's default page size.
const defaultWebhookListLimit = 50

// The webhook delivery log's Lua scripts (see each file's header).
var (
	webhookCreateScript = loadScript("webhook_create")
	webhookClaimScript  = loadScript("webhook_claim")
	webhookUpdateScript = loadScript("webhook_update")
	webhookRetryScript  = loadScript("webhook_retry")
	webhookGroupScript  = loadScript("webhook_group")
)

// webhookDelivery is the hash of webhook delivery id.
func (k keys) webhookDelivery(id string) string { return k.prefix + "webhook:delivery:" + id }

// webhookDeliveryPrefix is webhookDelivery(id) without the id.
func (k keys) webhookDeliveryPrefix() string { return k.prefix + "webhook:delivery:" }

// webhookDue is the sorted set of pending deliveries by next attempt (Unix
// ms); a claimed delivery is scored at the end of its claim's lease.
func (k keys) webhookDue() string { return k.prefix + "webhook:due" }

// webhookIndex is the index of the deliveries in status st, scored by their
// last update (Unix ms).
func (k keys) webhookIndex(st delivery.Status) string {
	return k.prefix + "webhook:idx:" + string(st)
}

// webhookDisabled is the hash endpoint → reason of endpoints disabled by a
// 410 answer.
func (k keys) webhookDisabled() string { return k.prefix + "webhook:disabled" }

// webhookKeys are KEYS[1..6] of webhook_update.lua and webhook_retry.lua.
func (k keys) webhookKeys(id string) []string {
	return []string{k.webhookDelivery(id), k.webhookDue(), k.webhookIndex(delivery.Pending),
		k.webhookIndex(delivery.Succeeded), k.webhookIndex(delivery.Failed), k.webhookDisabled()}
}

// ensureWebhookGroup creates an endpoint's consumer group on the events
// stream. It starts at the stream's end ("$"): an endpoint added to the
// configuration does not get the whole history; from then on the group
// remembers its position, so events of runs that end while every server is
// down are delivered after the restart.
func (s *Store) ensureWebhookGroup(ctx context.Context, group string) error {
	return s.forParts(func(_ int, pk keys) error {
		err := webhookGroupScript.Run(ctx, s.client, []string{pk.events()}, group).Err()
		if err != nil {
			return fmt.Errorf("create webhook group %s: %w", group, interpretError(err))
		}
		return nil
	})
}

// WebhookEventInit creates the consumer group of endpoint (its key; "": the
// legacy shared group) if it does not exist, at the end of the run-events
// stream: events appended from then on are delivered to it (also those
// appended while no dispatcher runs).
func (s *Store) WebhookEventInit(ctx context.Context, endpoint string) error {
	return s.ensureWebhookGroup(ctx, webhookGroupName(endpoint))
}

// WebhookEventRead returns run events for the webhook dispatcher
// p.Consumer in the consumer group of endpoint p.Group: first (when
// p.MinIdle > 0) events other dispatchers read at least MinIdle ago and
// never acknowledged (XAUTOCLAIM), else new events (XREADGROUP, blocking up
// to p.Block, in chunks of at most a second). A missing group (Redis lost
// it) is created again at the stream's end. Before reading new events it
// sets p.Lost when events were trimmed from the stream before the group
// read them. It returns (nil, nil) when no event arrived.
func (s *Store) WebhookEventRead(ctx context.Context, p *delivery.EventReadParams) ([]engine.Event, error) {
	if p.Consumer == "" {
		return nil, errors.New("read webhook events: missing consumer")
	}
	p.Lost = 0
	group := webhookGroupName(p.Group)
	count := int64(max(p.Count, 1))
	// claim takes over idle events of partition k.
	claim := func(k int) ([]redis.XMessage, error) {
		// Walk the whole pending list (a few scans of count entries):
		// idle entries may sit behind entries that are still being
		// handled.
		start := "0-0"
		for range maxAutoClaimScans {
			msgs, next, err := s.client.XAutoClaim(ctx, &redis.XAutoClaimArgs{Stream: s.parts[k].events(), Group: group,
				Consumer: p.Consumer, MinIdle: p.MinIdle, Start: start, Count: count}).Result()
			if err != nil || len(msgs) > 0 {
				return msgs, err
			}
			if next == "0-0" || next == "" {
				break
			}
			start = next
		}
		return nil, nil
	}
	// readNew reads new events of partition k, blocking up to block (-1:
	// not at all).
	readNew := func(ctx context.Context, k int, block time.Duration) ([]redis.XMessage, error) {
		res, err := s.client.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: p.Consumer,
			Streams: []string{s.parts[k].events(), ">"}, Count: count, Block: block}).Result()
		if errors.Is(err, redis.Nil) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		var msgs []redis.XMessage
		for _, st := range res {
			msgs = append(msgs, st.Messages...)
		}
		return msgs, nil
	}
	type partMsgs struct {
		k    int
		msgs []redis.XMessage
	}
	read := func() ([]partMsgs, error) {
		if p.MinIdle > 0 {
			for k := range s.parts {
				msgs, err := claim(k)
				if err != nil || len(msgs) > 0 {
					return []partMsgs{{k, msgs}}, err
				}
			}
		}
		for k := range s.parts {
			lost, err := s.webhookGap(ctx, k, group)
			if err != nil {
				return nil, err
			}
			p.Lost += lost
		}
		block := min(p.Block, maxBlockChunk)
		if block <= 0 {
			block = -1 // no BLOCK argument
		}
		if len(s.parts) == 1 {
			msgs, err := readNew(ctx, 0, block)
			return []partMsgs{{0, msgs}}, err
		}
		// Several partitions: one pass without blocking, then, if none
		// had an event, a blocking read of each at once (Cluster refuses
		// one XREADGROUP over several slots). Those return together, so
		// an event on one partition waits for the others' block: each
		// lasts at most partitionsEventBlock, again until block is over.
		deadline := time.Now().Add(block)
		for {
			var out []partMsgs
			for k := range s.parts {
				msgs, err := readNew(ctx, k, -1)
				if err != nil {
					return out, err
				}
				if len(msgs) > 0 {
					out = append(out, partMsgs{k, msgs})
				}
			}
			left := time.Until(deadline)
			if len(out) > 0 || block < 0 || left < time.Millisecond || ctx.Err() != nil {
				return out, nil
			}
			got := make([][]redis.XMessage, len(s.parts))
			err := s.forParts(func(k int, _ keys) error {
				var err error
				got[k], err = readNew(context.WithoutCancel(ctx), k, min(left, partitionsEventBlock)) // delivered entries must not be dropped
				return err
			})
			for k, msgs := range got {
				if len(msgs) > 0 {
					out = append(out, partMsgs{k, msgs})
				}
			}
			if len(out) > 0 || err != nil {
				return out, err
			}
		}
	}
	parts, err := read()
	if isNoGroup(err) { // first read, or Redis lost the group (restart without persistence)
		if err = s.ensureWebhookGroup(ctx, group); err == nil {
			parts, err = read()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("read webhook events: %w", interpretError(err))
	}
	var out []engine.Event
	for _, pm := range parts {
		for _, m := range pm.msgs {
			ev, err := parseEvent(m)
			if err != nil {
				// A malformed entry can never be delivered: hand back its ID
				// alone so that the caller acknowledges it.
				ev = engine.Event{ID: m.ID}
			}
			ev.ID = s.partID(pm.k, m.ID)
			out = append(out, ev)
		}
	}
	return out, nil
}

// partitionsEventBlock bounds each blocking read of a partition's events
// stream when there are several (see WebhookEventRead): what an event that
// arrives while a dispatcher waits may wait before the read returns it. An
// idle dispatcher then reads each partition about ten times a second.
const partitionsEventBlock = 100 * time.Millisecond

// webhookGap reports how many events were trimmed from the run-events
// stream (EventMaxLen) before group read them (0 if none). A gap is reported once, by the first reader that
// sees it (a marker key remembers it for an hour).
func (s *Store) webhookGap(ctx context.Context, k int, group string) (int64, error) {
	pk := s.parts[k]
	pipe := s.client.Pipeline()
	stc := pipe.XInfoStream(ctx, pk.events())
	gsc := pipe.XInfoGroups(ctx, pk.events())
	if _, err := pipe.Exec(ctx); err != nil {
		if strings.HasPrefix(err.Error(), "ERR no such key") {
			return 0, nil
		}
		return 0, err
	}
	st := stc.Val()
	var g *redis.XInfoGroup
	for i, x := range gsc.Val() {
		if x.Name == group {
			g = &gsc.Val()[i]
		}
	}
	if g == nil {
		return 0, errors.New("NOGROUP no such consumer group " + group)
	}
	// Entries are only trimmed from the head (XADD MAXLEN): when the
	// group is behind every entry left, those it never read number
	// entries-added - length - entries-read (the group is created with
	// entries-read set: webhook_group.lua).
	if st.Length == 0 || compareStreamIDs(g.LastDeliveredID, st.FirstEntry.ID) >= 0 {
		return 0, nil
	}
	lost := st.EntriesAdded - st.Length - g.EntriesRead
	if lost <= 0 {
		return 0, nil
	}
	ok, err := s.client.SetNX(ctx, pk.prefix+"webhook:gap:"+group+":"+g.LastDeliveredID, lost, time.Hour).Result()
	if err != nil || !ok {
		return 0, err
	}
	return lost, nil
}

// compareStreamIDs orders stream IDs ("ms-seq").
func compareStreamIDs(a, b string) int {
	split := func(id string) (uint64, uint64) {
		ms, seq, _ := strings.Cut(id, "-")
		m, _ := strconv.ParseUint(ms, 10, 64)
		n, _ := strconv.ParseUint(seq, 10, 64)
		return m, n
	}
	am, as := split(a)
	bm, bs := split(b)
	switch {
	case am != bm:
		return cmpU(am, bm)
	default:
		return cmpU(as, bs)
	}
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// WebhookEventAck acknowledges events of endpoint's consumer group handled
// by a dispatcher.
func (s *Store) WebhookEventAck(ctx context.Context, endpoint string, ids []string) error {
	byPart := map[int][]string{}
	for _, id := range ids {
		k, entry, ok := s.splitEventID(id)
		if !ok {
			continue // not an event of this store: nothing to acknowledge
		}
		byPart[k] = append(byPart[k], entry)
	}
	for k, entries := range byPart {
		if err := s.client.XAck(ctx, s.parts[k].events(), webhookGroupName(endpoint), entries...).Err(); err != nil {
			return fmt.Errorf("ack webhook events: %w", interpretError(err))
		}
	}
	return nil
}

// WebhookDeliveryCreate stores d as a new pending delivery, due now, unless a
// delivery with its ID exists (then it reports false and changes nothing).
// A delivery for an endpoint disabled by a 410 answer is stored failed and
// expires after retention.
func (s *Store) WebhookDeliveryCreate(ctx context.Context, d *delivery.Delivery, retention time.Duration) (bool, error) {
	if d == nil || d.ID == "" {
		return false, errors.New("create webhook delivery: missing ID")
	}
	now := orNow(d.CreatedAt)
	args := []any{d.ID, d.Endpoint, ms(now), retentionMS(retention),
		"id", d.ID, "event", d.Event, "eid", d.EventID, "run", d.RunID, "flow", d.FlowName, "ep", d.Endpoint,
		"url", d.URL, "attempts", d.Attempts, "code", d.LastStatusCode, "err", d.LastError,
		"created", ms(now), "updated", ms(now), "body", d.Body, "trace", d.TraceID, "parent", d.ParentSpanID}
	ks := []string{s.keys.webhookDelivery(d.ID), s.keys.webhookDue(), s.keys.webhookIndex(delivery.Pending),
		s.keys.webhookIndex(delivery.Failed), s.keys.webhookDisabled()}
	n, err := webhookCreateScript.Run(ctx, s.client, ks, args...).Int()
	if err != nil {
		return false, fmt.Errorf("create webhook delivery %s: %w", d.ID, interpretError(err))
	}
	return n != 0, nil
}

// WebhookDeliveryClaim claims up to p.Limit pending deliveries due at
// p.Now (zero: Redis's clock), to the endpoints p.Endpoints (nil: any), for
// p.Lease, under p.Token, atomically: two dispatchers never claim the same
// delivery while a lease holds. A due delivery to an endpoint disabled by a
// 410 answer is failed instead of claimed.
func (s *Store) WebhookDeliveryClaim(ctx context.Context, p *delivery.ClaimParams) ([]*delivery.Delivery, error) {
	if p.Limit <= 0 || (p.Endpoints != nil && len(p.Endpoints) == 0) {
		return nil, nil
	}
	now := ""
	if !p.Now.IsZero() {
		now = ms(p.Now)
	}
	filter := "0"
	if p.Endpoints != nil {
		filter = "1"
	}
	args := []any{s.keys.webhookDeliveryPrefix(), now, max(p.Lease.Milliseconds(), 1), p.Limit, p.Token,
		retentionMS(p.Retention), filter}
	for _, ep := range p.Endpoints {
		args = append(args, ep)
	}
	res, err := webhookClaimScript.Run(ctx, s.client, []string{s.keys.webhookDue(), s.keys.webhookDisabled(),
		s.keys.webhookIndex(delivery.Pending), s.keys.webhookIndex(delivery.Failed)}, args...).Slice()
	if err != nil {
		return nil, fmt.Errorf("claim webhook deliveries: %w", interpretError(err))
	}
	out := make([]*delivery.Delivery, 0, len(res))
	for _, r := range res {
		flat, ok := r.([]any)
		if !ok {
			return nil, fmt.Errorf("claim webhook deliveries: unexpected reply %T", r)
		}
		d, err := parseWebhookDelivery(flatMap(flat))
		if err != nil {
			return nil, fmt.Errorf("claim webhook deliveries: %w", err)
		}
		out = append(out, d)
	}
	return out, nil
}

// WebhookDeliveryUpdate records an attempt's outcome (p.Delivery's Status,
// Attempts, LastStatusCode, LastError, NextAttempt, UpdatedAt) if
// p.Delivery.Claim still holds the claim; otherwise it returns an error
// wrapping [engine.ErrConflict] and changes nothing.
func (s *Store) WebhookDeliveryUpdate(ctx context.Context, p *delivery.UpdateParams) error {
	d := p.Delivery
	next := ""
	if d.Status == delivery.Pending {
		next = msCeil(orNow(d.NextAttempt)) // not before: never a millisecond early
	}
	n, err := webhookUpdateScript.Run(ctx, s.client, s.keys.webhookKeys(d.ID),
		d.ID, d.Claim, string(d.Status), d.Attempts, d.LastStatusCode, d.LastError, next, ms(orNow(d.UpdatedAt)),
		retentionMS(p.Retention), d.Endpoint, p.DisableEndpoint).Int()
	if err != nil {
		return fmt.Errorf("update webhook delivery %s: %w", d.ID, interpretError(err))
	}
	if n == 0 {
		return fmt.Errorf("update webhook delivery %s: claim lost: %w", d.ID, engine.ErrConflict)
	}
	return nil
}

// WebhookDeliveryGet returns one delivery, or an error wrapping
// [engine.ErrNotFound].
func (s *Store) WebhookDeliveryGet(ctx context.Context, id string) (*delivery.Delivery, error) {
	h, err := s.client.HGetAll(ctx, s.keys.webhookDelivery(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("get webhook delivery %s: %w", id, interpretError(err))
	}
	if len(h) == 0 {
		return nil, fmt.Errorf("webhook delivery %s: %w", id, engine.ErrNotFound)
	}
	return parseWebhookDelivery(h)
}

// WebhookDeliveryList returns deliveries newest (last update) first: those
// in p.Status, or in any status.
func (s *Store) WebhookDeliveryList(ctx context.Context, p *delivery.ListParams) ([]*delivery.Delivery, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = defaultWebhookListLimit
	}
	statuses := delivery.Statuses
	if p.Status != "" {
		if !p.Status.Valid() {
			return nil, fmt.Errorf("list webhook deliveries: unknown status %q", p.Status)
		}
		statuses = []delivery.Status{p.Status}
	}
	type ref struct {
		idx string
		id  string
	}
	var refs []ref
	seen := map[string]bool{}
	for _, st := range statuses {
		ids, err := s.client.ZRevRange(ctx, s.keys.webhookIndex(st), 0, int64(limit-1)).Result()
		if err != nil {
			return nil, fmt.Errorf("list webhook deliveries: %w", interpretError(err))
		}
		for _, id := range ids {
			if !seen[id] { // in two indexes while its status changed
				seen[id] = true
				refs = append(refs, ref{s.keys.webhookIndex(st), id})
			}
		}
	}
	if len(refs) == 0 {
		return []*delivery.Delivery{}, nil
	}
	pipe := s.client.Pipeline()
	cmds := make([]*redis.SliceCmd, len(refs))
	for i, r := range refs {
		cmds[i] = pipe.HMGet(ctx, s.keys.webhookDelivery(r.id), webhookListFields...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("list webhook deliveries: %w", interpretError(err))
	}
	out := make([]*delivery.Delivery, 0, len(refs))
	for i, c := range cmds {
		h := map[string]string{}
		for j, v := range c.Val() {
			if v, ok := v.(string); ok {
				h[webhookListFields[j]] = v
			}
		}
		if h["id"] == "" { // expired: drop the stale index entry
			_ = s.client.ZRem(ctx, refs[i].idx, refs[i].id).Err()
			continue
		}
		d, err := parseWebhookDelivery(h)
		if err != nil {
			return nil, fmt.Errorf("list webhook deliveries: %w", err)
		}
		if p.Status != "" && d.Status != p.Status {
			continue // changed between the index read and the hash read
		}
		d.Body = nil
		out = append(out, d)
	}
	sortDeliveries(out)
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// WebhookDeliveryRetry makes a delivery send again at once: a succeeded or
// failed one becomes pending with Manual set (its next failure ends it) and
// its endpoint is enabled again; a pending one becomes due now. It returns
// the delivery, or an error wrapping [engine.ErrNotFound].
func (s *Store) WebhookDeliveryRetry(ctx context.Context, id string, at time.Time) (*delivery.Delivery, error) {
	res, err := webhookRetryScript.Run(ctx, s.client, s.keys.webhookKeys(id), id, ms(orNow(at))).Slice()
	if err != nil {
		return nil, fmt.Errorf("retry webhook delivery %s: %w", id, interpretError(err))
	}
	d, err := parseWebhookDelivery(flatMap(res))
	if err != nil {
		return nil, fmt.Errorf("retry webhook delivery %s: %w", id, err)
	}
	d.Body = nil
	return d, nil
}

// webhookListFields are the delivery hash fields a list reads (all but the
// body).
var webhookListFields = []string{"id", "event", "eid", "run", "flow", "ep", "url", "status", "attempts", "code", "err",
	"next", "created", "updated", "trace", "parent", "manual", "claim"}

// sortDeliveries orders deliveries newest update first, then by ID.
func sortDeliveries(ds []*delivery.Delivery) {
	for i := 1; i < len(ds); i++ { // insertion sort: lists are short
		for j := i; j > 0 && deliveryBefore(ds[j], ds[j-1]); j-- {
			ds[j], ds[j-1] = ds[j-1], ds[j]
		}
	}
}

func deliveryBefore(a, b *delivery.Delivery) bool {
	if !a.UpdatedAt.Equal(b.UpdatedAt) {
		return a.UpdatedAt.After(b.UpdatedAt)
	}
	return a.ID > b.ID
}

func retentionMS(d time.Duration) int64 {
	if d <= 0 {
		d = DefaultRetention
	}
	return max(d.Milliseconds(), 1)
}

// flatMap turns a flat field, value reply into a map.
func flatMap(flat []any) map[string]string {
	m := make(map[string]string, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		k, _ := flat[i].(string)
		v, _ := flat[i+1].(string)
		m[k] = v
	}
	return m
}

// parseWebhookDelivery decodes a delivery hash.
func parseWebhookDelivery(h map[string]string) (*delivery.Delivery, error) {
	d := &delivery.Delivery{
		ID: h["id"], Event: h["event"], EventID: h["eid"], RunID: h["run"], FlowName: h["flow"], Endpoint: h["ep"],
		URL: h["url"], Status: delivery.Status(h["status"]), LastError: h["err"], TraceID: h["trace"],
		ParentSpanID: h["parent"], Manual: h["manual"] == "1", Claim: h["claim"],
	}
	if b, ok := h["body"]; ok {
		d.Body = []byte(b)
	}
	var err error
	num := func(f string) int {
		if err != nil || h[f] == "" {
			return 0
		}
		var n int
		n, err = strconv.Atoi(h[f])
		return n
	}
	tm := func(f string) time.Time {
		if err != nil || h[f] == "" {
			return time.Time{}
		}
		var t time.Time
		t, err = parseMS(h[f])
		return t
	}
	d.Attempts = num("attempts")
	d.LastStatusCode = num("code")
	d.NextAttempt = tm("next")
	d.CreatedAt = tm("created")
	d.UpdatedAt = tm("updated")
	if err != nil {
		return nil, fmt.Errorf("webhook delivery %s: %w", d.ID, err)
	}
	if d.Status != delivery.Pending {
		d.NextAttempt = time.Time{}
	}
	return d, nil
}
