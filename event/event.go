// Package event defines what a running ferry App reports about itself: one
// type per kind of state change or unit of work (X1). Subscribe with
// ferry.OnEvent and switch on the type:
//
//	ferry.OnEvent(func(e event.Event) {
//		switch e := e.(type) {
//		case event.BatchConsumed:
//			consumed.Add(float64(e.Count))
//		case event.ConsumeFailed:
//			log.Printf("%s/%d attempt %d: %v", e.Topic, e.Partition, e.Attempt, e.Err)
//		}
//	})
//
// A subscriber runs synchronously on the goroutine where the event happens
// (a partition's worker, the poll loop, a rebalance callback, a commit) —
// or, for a partition's Paused and Resumed events, on whichever goroutine
// is reporting that partition's events at the time, so that they arrive in
// order — never while ferry holds the locks of its partitions or commits:
// keep it fast and do not block in it (a slow subscriber slows what it
// observes).
// It may call the App's read-only methods (Stats, Ready, Healthy). Events of
// one partition arrive in order; events of different partitions may
// interleave.
//
// With no subscriber, ferry builds no event: reporting costs one nil check
// per unit of work.
//
// Every event carries the consumer group it happened in. Offsets are Kafka
// offsets; a "next offset" is the offset of the next message to consume,
// as committed to Kafka.
package event

import "time"

// Event is one of the types of this package.
type Event interface{ event() }

// BatchConsumed: Consume returned nil for a batch (for at-most-once topics,
// also when it failed: the batch was committed before, and is not retried;
// a ConsumeFailed comes first then).
type BatchConsumed struct {
	Group     string
	Topic     string
	Partition int32
	// Count is the number of messages in the batch.
	Count int
	// FirstOffset and LastOffset are the offsets of the batch's first and
	// last message.
	FirstOffset, LastOffset int64
	// Attempt is 1 on first delivery, n on the n-th try after failures.
	Attempt int
	// Duration is how long Consume ran.
	Duration time.Duration
	// Lag is the partition's end offset, as of the latest fetch, minus the
	// offset after this batch: the messages still to process. -1 when the
	// end is not known yet.
	Lag int64
}

// ConsumeFailed: Consume returned an error or panicked (A5, A6).
type ConsumeFailed struct {
	Group                   string
	Topic                   string
	Partition               int32
	Count                   int
	FirstOffset, LastOffset int64
	Attempt                 int
	Duration                time.Duration
	Err                     error
}

// RetryScheduled: a failed partition waits Delay, then retries from Offset
// (its first unmarked message) as attempt Attempt (A5). Its fetching is
// paused meanwhile (a Paused event precedes the wait, a Resumed event ends
// it). In a Parallel partition only the failed message's lane waits, from
// that message (K5): nothing is paused and no Paused event is sent.
type RetryScheduled struct {
	Group     string
	Topic     string
	Partition int32
	// Offset is where the retry starts.
	Offset int64
	// Attempt is the number the next attempt will carry.
	Attempt int
	Delay   time.Duration
}

// DeadLettered: a message was written to its topic's dead-letter topic,
// after its last attempt (E1) or because the consumer asked (E2).
type DeadLettered struct {
	Group           string
	Topic           string
	Partition       int32
	Offset          int64
	DeadLetterTopic string
	// Attempts is how many times the message was tried.
	Attempts int
	// Err is the error of its last attempt.
	Err error
}

// Committed: a commit request finished (A2, A3, A4, M3, M4, O5), or an
// exactly-once transaction committed offsets (S3).
type Committed struct {
	Group string
	// Reason is "periodic", "revocation", "revocation hooks", "sync",
	// "seek" (an operator's App.Seek), "shutdown", or "transaction" (an
	// exactly-once transaction committed).
	Reason string
	// Offsets holds the committed next offsets per topic and partition;
	// partitions whose commit failed are left out.
	Offsets map[string]map[int32]int64
	// Err is set when some partition's commit failed.
	Err error
}

// Assigned: the member joined (or re-joined) its group and was given these
// partitions; the map is empty when the group gave it none.
type Assigned struct {
	Group      string
	Partitions map[string][]int32
}

// Revoked: partitions were handed back in a rebalance, after their
// in-flight batches finished and their marks were committed (A3).
type Revoked struct {
	Group      string
	Partitions map[string][]int32
}

// Lost: the member lost partitions without handing them back (session
// expired, fenced): their uncommitted work will be redelivered to the next
// owner (A7).
type Lost struct {
	Group      string
	Partitions map[string][]int32
}

// Paused: a partition stopped taking new messages for a while; Reason says
// why:
//
//   - "backoff": it failed and waits out its retry backoff (A5); its
//     fetching is paused. (A Parallel partition's failed lane waits
//     alone: no pause.)
//   - "memory": its consumer is behind and what it fetched holds more than
//     QueueBytes; its fetching is paused until half of that was consumed.
//   - "record": a parallel partition's record of messages finished out of
//     order would not fit in the commit metadata if it took more (K4); it
//     takes nothing new until its oldest unfinished message finishes
//     (fetching goes on until the queue reaches QueueBytes).
//   - "user": an operator paused it (App.Pause, O4); it stays paused until
//     App.Resume, whatever its retries do.
//
// A Resumed event with the same Reason ends each pause, unless the
// partition was revoked or lost meanwhile. Pauses are rare (not per message
// or batch): a slow partition pauses for memory at most once per
// QueueBytes/2 consumed.
type Paused struct {
	Group     string
	Topic     string
	Partition int32
	Reason    string
}

// Resumed: a partition paused for Reason takes new messages again.
type Resumed struct {
	Group     string
	Topic     string
	Partition int32
	Reason    string
}

// The reasons of Paused and Resumed.
const (
	PauseBackoff = "backoff"
	PauseMemory  = "memory"
	PauseRecord  = "record"
	PauseUser    = "user"
)

// FetchFailed: a fetch of a partition returned an error franz-go does not
// retry by itself (an authorization error, say). Topic is empty (and
// Partition -1 or 0) for an error of the client as a whole that franz-go
// reports through its fetches, such as a failed group join.
type FetchFailed struct {
	Group     string
	Topic     string
	Partition int32
	Err       error
}

// Shutdown: the group finished shutting down (A4): Duration is the time
// from the start of the shutdown to the member leaving its group; Err is
// what Run returns for the group (nil after a clean shutdown).
type Shutdown struct {
	Group    string
	Duration time.Duration
	Err      error
}

func (BatchConsumed) event()  {}
func (ConsumeFailed) event()  {}
func (RetryScheduled) event() {}
func (DeadLettered) event()   {}
func (Committed) event()      {}
func (Assigned) event()       {}
func (Revoked) event()        {}
func (Lost) event()           {}
func (Paused) event()         {}
func (Resumed) event()        {}
func (FetchFailed) event()    {}
func (Shutdown) event()       {}
