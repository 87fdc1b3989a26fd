package ferry

import (
	"context"
	"fmt"

	"github.com/ferrykit/ferry/internal/engine"
)

// Errors of the operator calls Pause, Resume and Seek.
var (
	// ErrNotAssigned: the app does not consume that partition now — the
	// app is not running, its group does not route the topic, another
	// member owns the partition, or it is being revoked.
	ErrNotAssigned = engine.ErrNotAssigned
	// ErrOffsetOutOfRange: Seek was given an offset outside the
	// partition's first and end offsets.
	ErrOffsetOutOfRange = engine.ErrOffsetOutOfRange
)

// Pause stops consuming one partition this app owns until Resume (O4), like
// Karafka's pause or Spring's pausePartition. It returns at once: a batch
// already started finishes; no batch starts after Pause returned, and the
// partition is not fetched (what was fetched and not handed over is dropped
// and fetched again on Resume). It holds through the partition's retries:
// a failed batch's backoff ends, and the partition stays paused. It holds
// until Resume, or until the partition leaves this app — revoked, lost or
// shut down — since a pause belongs to this assignment: a partition
// assigned again starts unpaused. Pausing a paused partition does nothing.
//
// Stats shows it (PausedByUser), a subscriber gets a Paused event with
// reason "user", and health does not count a paused partition as failing.
// Under ExactlyOnce the transaction in progress finishes first: records it
// polled are consumed and committed with it.
//
// It returns an error wrapping ErrNotAssigned if the app does not own the
// partition now.
func (a *App) Pause(group, topic string, partition int32) error {
	g, err := a.routed(group, topic)
	if err != nil {
		return err
	}
	return g.Pause(topic, partition)
}

// Resume ends a Pause (O4): the partition is fetched again from its first
// message not yet handed to the consumer. Resuming a partition that is not
// paused does nothing. It returns an error wrapping ErrNotAssigned if the
// app does not own the partition now.
func (a *App) Resume(group, topic string, partition int32) error {
	g, err := a.routed(group, topic)
	if err != nil {
		return err
	}
	return g.Resume(topic, partition)
}

// Seek moves one partition this app owns to offset (O5), like Spring's
// seek or Karafka's seek followed by a commit: the next message handed to
// the consumer is the one at offset — forwards to skip messages (a poison
// message, say), backwards to process some again. offset must lie within
// the partition's first and end offsets, which Seek asks the cluster for;
// else it returns an error wrapping ErrOffsetOutOfRange.
//
// Seek waits for the partition's batch in flight (with Parallel, every
// message in flight) to finish, starting nothing meanwhile; then it drops
// what was fetched and not handed over (a parallel partition's admitted
// messages too), ends a retry — the failing message is behind or ahead now
// — and commits offset before it returns: the committed offset may move
// backwards this way, and only this way. This holds with ManualOffsets
// too: the operator's position stands for the consumer's marks, and later
// marks go on from it. A topic whose StartOffsets keeps its offsets outside
// Kafka (ferrypg) starts its next assignment where that store says, and
// ferrypg skips messages below its stored offset: there a Seek back does
// not process anything again.
//
// A paused partition stays paused. If ctx ends before the partition took
// the seek, nothing changed; once taken, Seek waits for its commit, bounded
// by ctx. An error wrapping ErrNotAssigned says the app does not own the
// partition (or lost it before the seek applied). ExactlyOnce topics refuse
// it with an error wrapping ErrTransactional: their offsets move only in
// transactions with the outputs; stop the group and reset its offsets
// (`ferry offsets reset`) instead.
func (a *App) Seek(ctx context.Context, group, topic string, partition int32, offset int64) error {
	g, err := a.routed(group, topic)
	if err != nil {
		return err
	}
	return g.Seek(ctx, topic, partition, offset)
}

// routed returns the engine group that consumes topic in group.
func (a *App) routed(group, topic string) (*engine.Group, error) {
	for _, g := range a.groups {
		if g.Name == group && g.Topics[topic] != nil {
			return g, nil
		}
	}
	return nil, fmt.Errorf("%w: group %q does not consume topic %q in this app", ErrNotAssigned, group, topic)
}
