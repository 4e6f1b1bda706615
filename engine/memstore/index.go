package memstore

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/pyoco/pyoco/engine"
)

// runKey is a run's place in every ordering: CreatedAt (unix nanos), then ID.
type runKey struct {
	created int64
	id      string
}

func (a runKey) compare(b runKey) int {
	if a.created != b.created {
		if a.created < b.created {
			return -1
		}
		return 1
	}
	return strings.Compare(a.id, b.id)
}

// index is a set of runs sorted oldest first, so that a new run (the common
// case) is appended at the end; lists walk it backwards. Insert and remove
// are a binary search plus a copy of the tail, which is short for the runs
// that change most (recent ones).
type index []runKey

func (ix *index) insert(k runKey) {
	i, found := slices.BinarySearchFunc(*ix, k, runKey.compare)
	if found {
		return
	}
	*ix = slices.Insert(*ix, i, k)
}

func (ix *index) remove(k runKey) {
	i, found := slices.BinarySearchFunc(*ix, k, runKey.compare)
	if found {
		*ix = slices.Delete(*ix, i, i+1)
	}
}

// below returns how many keys sort strictly before c: walking backwards from
// that position yields the runs after c in newest-first order.
func (ix index) below(c runKey) int {
	i, _ := slices.BinarySearchFunc(ix, c, runKey.compare)
	return i
}

// cursor walks several indexes at once, newest first, merging them (the
// indexes of a status filter are disjoint, so no key appears twice).
type cursor struct {
	ixs []index
	pos []int // next element of ixs[i] is ixs[i][pos[i]-1]
}

func newCursor(ixs []index, after *runKey) *cursor {
	c := &cursor{ixs: ixs, pos: make([]int, len(ixs))}
	for i, ix := range ixs {
		if after != nil {
			c.pos[i] = ix.below(*after)
		} else {
			c.pos[i] = len(ix)
		}
	}
	return c
}

// next returns the newest key not yet returned, or false when all are.
func (c *cursor) next() (runKey, bool) {
	best := -1
	for i, ix := range c.ixs {
		if c.pos[i] == 0 {
			continue
		}
		if best < 0 || ix[c.pos[i]-1].compare(c.ixs[best][c.pos[best]-1]) > 0 {
			best = i
		}
	}
	if best < 0 {
		return runKey{}, false
	}
	c.pos[best]--
	return c.ixs[best][c.pos[best]], true
}

// encodeCursor makes the opaque RunList cursor for the last run of a page.
func encodeCursor(k runKey) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(k.created, 10) + "." + k.id))
}

// decodeCursor reverses encodeCursor; any failure is [engine.ErrBadCursor].
func decodeCursor(s string) (runKey, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return runKey{}, fmt.Errorf("cursor %q: %w", s, engine.ErrBadCursor)
	}
	ns, id, ok := strings.Cut(string(b), ".")
	if !ok || id == "" {
		return runKey{}, fmt.Errorf("cursor %q: %w", s, engine.ErrBadCursor)
	}
	created, err := strconv.ParseInt(ns, 10, 64)
	if err != nil {
		return runKey{}, fmt.Errorf("cursor %q: %w", s, engine.ErrBadCursor)
	}
	return runKey{created: created, id: id}, nil
}
