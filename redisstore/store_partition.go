package redisstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/pyoco/pyoco/engine"
)

// mergeNewestFirst merges the runs each partition listed (each newest
// first) and keeps the n newest, by index member: the members of all
// partitions order runs the same way, so the result is the walk a single
// index would give.
func mergeNewestFirst(parts [][]map[string]string, n int) []map[string]string {
	if len(parts) == 1 {
		return parts[0]
	}
	var all []map[string]string
	for _, p := range parts {
		all = append(all, p...)
	}
	slices.SortFunc(all, func(a, b map[string]string) int { return cmp.Compare(b[fieldMember], a[fieldMember]) })
	if len(all) > n {
		all = all[:n]
	}
	return all
}

// partID is the Event.ID or Lease.ID of entry id of partition k's events
// or queue stream: the entry ID itself with one partition, "<k>/<entry ID>"
// with several (entry IDs of different partitions may be equal).
func (s *Store) partID(k int, id string) string {
	if len(s.parts) == 1 {
		return id
	}
	return strconv.Itoa(k) + "/" + id
}

// leaseEntry is the queue entry ID of a Lease.ID made by [Store.partID].
func leaseEntry(id string) string {
	if _, entry, ok := strings.Cut(id, "/"); ok {
		return entry
	}
	return id
}

// splitEventID reverses [Store.partID]; ok is false for an ID this Store
// did not make.
func (s *Store) splitEventID(id string) (k int, entry string, ok bool) {
	if len(s.parts) == 1 {
		return 0, id, validStreamID(id)
	}
	ks, entry, found := strings.Cut(id, "/")
	k, err := strconv.Atoi(ks)
	if !found || err != nil || k < 0 || k >= len(s.parts) || !validStreamID(entry) {
		return 0, "", false
	}
	return k, entry, true
}

// partEvent is an event with its partition and entry ID, for merging.
type partEvent struct {
	k     int
	entry string
	ev    engine.Event
}

// comparePartEvents orders events of several partitions: by entry ID (the
// masters' clocks, to the millisecond, then the sequence), then by
// partition.
func comparePartEvents(a, b partEvent) int {
	if c := compareStreamIDs(a.entry, b.entry); c != 0 {
		return c
	}
	return cmp.Compare(a.k, b.k)
}

// eventListPartitions is EventList over several partitions: each
// partition's events stream is read from just after the position p.After
// names (an entry ID and the partition it came from), and the streams are
// merged by entry ID, then partition. Events of one run are in order (one
// partition); events of runs of different partitions are ordered by the
// masters' clocks, to the millisecond.
func (s *Store) eventListPartitions(ctx context.Context, p *engine.EventListParams) ([]engine.Event, error) {
	afterK, after := -1, ""
	if p.After != "" {
		k, entry, ok := s.splitEventID(p.After)
		if !ok {
			return nil, fmt.Errorf("list events after %q: %w", p.After, engine.ErrBadCursor)
		}
		afterK, after = k, entry
	}
	lists := make([][]partEvent, len(s.parts))
	err := s.forParts(func(k int, pk keys) error {
		start := "-"
		switch {
		case after == "":
		case k <= afterK:
			start = "(" + after
		default:
			start = after // same entry ID, later partition: after the position
		}
		var (
			msgs []redis.XMessage
			err  error
		)
		if p.Limit > 0 {
			msgs, err = s.client.XRangeN(ctx, pk.events(), start, "+", int64(p.Limit)).Result()
		} else {
			msgs, err = s.client.XRange(ctx, pk.events(), start, "+").Result()
		}
		if err != nil {
			return fmt.Errorf("list events: %w", interpretError(err))
		}
		for _, m := range msgs {
			ev, err := parseEvent(m)
			if err != nil {
				return fmt.Errorf("list events: %w", err)
			}
			ev.ID = s.partID(k, m.ID)
			lists[k] = append(lists[k], partEvent{k: k, entry: m.ID, ev: ev})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var all []partEvent
	for _, l := range lists {
		all = append(all, l...)
	}
	slices.SortFunc(all, comparePartEvents)
	if p.Limit > 0 && len(all) > p.Limit {
		all = all[:p.Limit]
	}
	out := make([]engine.Event, len(all))
	for i, e := range all {
		out[i] = e.ev
	}
	return out, nil
}
