package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pyoco/pyoco/engine"
)

// scheduleIntentScript: ScheduleClaim with several partitions.
var scheduleIntentScript = loadScript("schedule_intent")

// scheduleIntentPrefix prefixes the schedule hash's fields that hold a
// run still to create (schedule_intent.lua).
const scheduleIntentPrefix = "intent:"

// createIntent is create.lua's keys and arguments, kept in the schedule
// hash until the run exists.
type createIntent struct {
	Keys []string `json:"keys"`
	Args []string `json:"args"`
}

// scheduleClaimPartitions is ScheduleClaim with several partitions: the
// schedule hash stays under the base tag, the run goes to its own
// partition, so the claim records the run as an intent in the schedule
// hash (one script), then creates it and drops the intent. A crash in
// between leaves the intent for the next ScheduleGet to carry out: the
// tick's run is neither lost nor made twice.
func (s *Store) scheduleClaimPartitions(ctx context.Context, p *engine.ScheduleClaimParams) error {
	in, err := s.scheduleClaimIntent(ctx, p)
	if err != nil || p.Run == nil {
		return err
	}
	if err := s.carryOutIntent(ctx, s.keys.schedule(p.Flow, p.Name), p.Run.ID, in); err != nil {
		return fmt.Errorf("claim schedule %s/%s: %w", p.Flow, p.Name, err)
	}
	return nil
}

// scheduleClaimIntent is the first step of scheduleClaimPartitions: the
// claim, with the run recorded as an intent (none for a skip).
func (s *Store) scheduleClaimIntent(ctx context.Context, p *engine.ScheduleClaimParams) (createIntent, error) {
	skey := s.keys.schedule(p.Flow, p.Name)
	prev := ""
	if !p.Prev.IsZero() {
		prev = ms(p.Prev)
	}
	tickErr := func(err error) error {
		return fmt.Errorf("claim schedule %s/%s tick %s: %w", p.Flow, p.Name, p.Tick.UTC().Format(time.RFC3339Nano), interpretError(err))
	}
	if p.Run == nil {
		if err := scheduleIntentScript.Run(ctx, s.client, []string{skey}, ms(p.Tick), prev, "skip", "", "", "").Err(); err != nil {
			return createIntent{}, tickErr(err)
		}
		return createIntent{}, nil
	}
	ks, args, err := s.createArgs(p.Run)
	if err != nil {
		return createIntent{}, fmt.Errorf("claim schedule %s/%s: %w", p.Flow, p.Name, err)
	}
	s.maybeSweep(ctx)
	// The run's partition is another slot: refuse an existing run before
	// claiming (run IDs are random, so only a caller's bug reuses one).
	if n, err := s.client.Exists(ctx, ks[0]).Result(); err != nil {
		return createIntent{}, tickErr(err)
	} else if n > 0 {
		return createIntent{}, fmt.Errorf("claim schedule %s/%s: run %s exists: %w", p.Flow, p.Name, p.Run.ID, engine.ErrConflict)
	}
	in := createIntent{Keys: ks, Args: make([]string, len(args))}
	for i, a := range args {
		in.Args[i] = scriptArg(a)
	}
	blob, err := json.Marshal(in)
	if err != nil {
		return createIntent{}, fmt.Errorf("claim schedule %s/%s: %w", p.Flow, p.Name, err)
	}
	created := ""
	if len(args) > 4 {
		created = in.Args[4] // create.lua's ARGV[5]
	}
	err = scheduleIntentScript.Run(ctx, s.client, []string{skey}, ms(p.Tick), prev, "run", p.Run.ID, created, blob).Err()
	if err != nil {
		return createIntent{}, tickErr(err)
	}
	return in, nil
}

// carryOutIntent creates the intent's run (an existing one counts as
// created) and deletes the intent from the schedule hash skey.
func (s *Store) carryOutIntent(ctx context.Context, skey, runID string, in createIntent) error {
	args := make([]any, len(in.Args))
	for i, a := range in.Args {
		args[i] = a
	}
	err := createScript.Run(ctx, s.client, in.Keys, args...).Err()
	if err != nil && !errors.Is(interpretError(err), engine.ErrConflict) {
		return fmt.Errorf("create run %s: %w", runID, interpretError(err))
	}
	if err := s.client.HDel(ctx, skey, scheduleIntentPrefix+runID).Err(); err != nil {
		return fmt.Errorf("create run %s: %w", runID, interpretError(err))
	}
	return nil
}

// carryOutIntents carries out the intents left in a schedule hash h (by
// a server that crashed between its claim and the run's creation).
func (s *Store) carryOutIntents(ctx context.Context, skey string, h map[string]string) error {
	for f, v := range h {
		runID, ok := strings.CutPrefix(f, scheduleIntentPrefix)
		if !ok {
			continue
		}
		var in createIntent
		if err := json.Unmarshal([]byte(v), &in); err != nil || len(in.Keys) == 0 {
			_ = s.client.HDel(ctx, skey, f).Err() // not ours to carry out
			continue
		}
		if err := s.carryOutIntent(ctx, skey, runID, in); err != nil {
			return err
		}
	}
	return nil
}

// scriptArg is a as Redis receives it (go-redis's formatting of the types
// createArgs uses).
func scriptArg(a any) string {
	switch v := a.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	case int:
		return strconv.Itoa(v)
	case int64:
		return strconv.FormatInt(v, 10)
	default:
		return fmt.Sprint(v)
	}
}
