// Package storetest is the conformance suite for [engine.Store]
// implementations. Call [Run] from a _test.go file with a constructor that
// returns a fresh, empty store per test; every implementation (memstore,
// redisstore) runs the same suite, as River's riverdrivertest does for its
// drivers. Import it only from tests.
//
// The suite pins the contract written in engine/store.go, and resolves its
// open points as follows (each is checked by a subtest):
//
//   - Times: the suite only uses times truncated to the millisecond and
//     compares them with [time.Time.Equal] in UTC, so a store may keep
//     millisecond precision and any location. Params values round-trip as
//     JSON would (the suite uses strings only); empty and nil slices and maps
//     are equal.
//   - RunCreate rejects a run whose Status or any task's Status is not
//     PENDING (with an error that is not ErrConflict) and stores nothing. A
//     zero CreatedAt is set by the store to the current time.
//   - RunStart on a PENDING run records a RUNNING event; a takeover (RUNNING
//     or CANCELLING) changes no status and records no event.
//   - RunFinish accepts any non-terminal run, PENDING included. A
//     non-terminal p.Status is an error (neither ErrConflict nor ErrNotFound:
//     engine has no sentinel for invalid arguments) that changes nothing.
//     The returned run carries its tasks, like RunGet.
//   - RunCancel on a terminal run returns the run's terminal status together
//     with an error wrapping ErrConflict ("ErrConflict (with the run's
//     status)"). A repeated cancel of a CANCELLING run records no event.
//   - RunList orders by CreatedAt descending, ties by ID descending (newer
//     UUIDv7 first). Limit <= 0 means 50. NextCursor is "" whenever no
//     further run matches, even when the last page is exactly full.
//     Duplicate statuses in the filter do not duplicate runs; a duplicated
//     tag on a run does not either.
//   - Cursors are positions: the next page holds the runs that sort after
//     the previous page's last run and match the filter at the time of the
//     request. So a walk never returns a run twice; returns exactly once
//     every run that exists and matches the filter throughout the walk;
//     does not return runs created during the walk with a later CreatedAt;
//     and does not return a run that stopped matching before its page was
//     read. A cursor the store cannot parse gives an error wrapping
//     ErrBadCursor.
//   - TaskUpdate: OutputTruncated changes only together with a non-empty
//     Output; attempts are kept in Number order; updates are allowed while
//     the run is CANCELLING.
//   - LogAppend gives one call's entries consecutive Seqs (a batch is
//     atomic), accepts an empty batch without using a Seq, and still accepts
//     entries for a terminal run (late lines). LogList applies Task and
//     After, then Tail, then Limit. LogList of an unknown run is not pinned
//     (ErrNotFound or empty).
//   - EventList: event IDs are opaque strings (the suite checks uniqueness
//     and After paging, not their order as strings). A store with several
//     partitions (a Partitions method returning more than 1) orders each
//     run's events, not events of runs of different partitions; likewise
//     its queue delivers oldest first per partition only. Event.Time is the time
//     of the change: CreatedAt for PENDING, p.At otherwise. An After the
//     store cannot parse gives an error wrapping ErrBadCursor. Failed calls
//     record no event; TaskUpdate and LogAppend record none.
//   - CancelNotifier (tested only if the store implements it): the channel
//     closes on RunCancel of that run (PENDING or RUNNING), is closed at
//     once if the run is already CANCELLING or CANCELLED, closes when ctx
//     ends, and an unknown run gives ErrNotFound.
//
// [RunIdempotency] checks an [engine.IdempotencyStore] (memstore.Store,
// memstore.Idempotency, redisstore.Store). The webhook delivery log has its
// own suite, webhooks/delivery/deliverytest, so storetest need not import
// its types.
//
// storetest imports engine and testify; nothing in pyoco's non-test code may
// import it.
package storetest
