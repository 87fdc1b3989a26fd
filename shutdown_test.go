package ferry_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
)

// shutdownConsumer blocks in one batch until released, and marks in its
// Shutdown hook.
type shutdownConsumer struct {
	claim      *ferry.Claim
	inFlight   chan struct{} // closed when the slow batch started
	release    chan struct{} // closed to let it finish
	ctxErr     atomic.Value
	shutdownOK atomic.Bool
	last       *ferry.Message
}

func (s *shutdownConsumer) Consume(ctx context.Context, b *ferry.Batch) error {
	if b.Messages[0].Offset == 0 {
		close(s.inFlight)
		<-s.release
		if err := ctx.Err(); err != nil {
			s.ctxErr.Store(err)
		}
	}
	s.last = b.Last()
	return nil
}

func (s *shutdownConsumer) Shutdown(context.Context) error {
	s.shutdownOK.Store(s.claim.MarkAsConsumed(s.last))
	return nil
}

// A4, M9: cancelling Run lets the in-flight batch finish with a live
// context, runs Shutdown hooks, commits what finished and returns nil; the
// next member of the group starts right after it.
func TestShutdownDrainsInFlightWork(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	s.produce(0, 30)
	sc := &shutdownConsumer{inFlight: make(chan struct{}), release: make(chan struct{})}
	newConsumer := func(claim *ferry.Claim) ferry.Consumer { sc.claim = claim; return sc }
	app := s.start(s.routeTo(newConsumer, ferry.MaxMessages(10)))
	s.waitClosed("started the first batch", sc.inFlight)
	stopped := make(chan error, 1)
	go func() { stopped <- app.stop(t) }()
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-stopped:
		t.Fatalf("Run returned (%v) while a batch was in flight", err)
	default:
	}
	close(sc.release)
	if err := <-stopped; err != nil {
		t.Fatalf("Run = %v, want nil after a clean drain", err)
	}
	if v := sc.ctxErr.Load(); v != nil {
		t.Errorf("in-flight batch saw a cancelled context (%v); it must be allowed to finish", v)
	}
	if !sc.shutdownOK.Load() {
		t.Error("MarkAsConsumed in the Shutdown hook returned false")
	}
	// The in-flight batch finished, nothing after it ran.
	s.wantCommitted(map[int32]int64{0: 10})

	// A restart continues right after the committed batch.
	if first := s.restart(20); first != 10 {
		t.Errorf("restart began at offset %d, want 10", first)
	}
}

// A4: work that outlives ShutdownTimeout makes Run return an error wrapping
// ErrShutdownTimeout, and is not committed.
func TestShutdownTimeout(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	s.produce(0, 20)
	stuck := make(chan struct{})
	release := make(chan struct{})
	defer close(release)
	fn := func(ctx context.Context, b *ferry.Batch) error {
		if b.Messages[0].Offset == 10 {
			close(stuck)
			select { // ignores shutdown until its context is cancelled
			case <-ctx.Done():
				<-release
			case <-release:
			}
		}
		return nil
	}
	app := s.start(ferry.ShutdownTimeout(time.Second), s.route(fn, ferry.MaxMessages(10)))
	s.waitClosed("started the second batch", stuck)
	time.Sleep(400 * time.Millisecond) // the first batch's mark reaches a periodic commit
	began := time.Now()
	err := app.stop(t)
	took := time.Since(began)
	if !errors.Is(err, ferry.ErrShutdownTimeout) {
		t.Fatalf("Run = %v, want ErrShutdownTimeout", err)
	}
	if took < time.Second || took > 8*time.Second {
		t.Errorf("Run returned after %s, want about the 1s timeout", took)
	}
	s.wantCommitted(map[int32]int64{0: 10}) // the unfinished batch is not committed
}

// A4: past ShutdownTimeout, what finished is still committed — here the
// first batch, with no periodic commit due — and the batch that outlived
// the timeout is not, even when it returns nil once its context is
// cancelled. A restart resumes right after the finished batch.
func TestShutdownTimeoutCommitsWhatFinished(t *testing.T) {
	s := newScenario(t, cluster(t), 1)
	s.produce(0, 20)
	stuck := make(chan struct{})
	fn := func(ctx context.Context, b *ferry.Batch) error {
		if b.Messages[0].Offset == 10 {
			close(stuck)
			<-ctx.Done() // ignores shutdown until its context is cancelled, then claims success
		}
		return nil
	}
	app := s.start(ferry.CommitInterval(time.Hour), ferry.ShutdownTimeout(time.Second),
		s.route(fn, ferry.MaxMessages(10)))
	s.waitClosed("started the second batch", stuck)
	if err := app.stop(t); !errors.Is(err, ferry.ErrShutdownTimeout) {
		t.Fatalf("Run = %v, want ErrShutdownTimeout", err)
	}
	s.wantCommitted(map[int32]int64{0: 10})

	if first := s.restart(10); first != 10 {
		t.Errorf("restart began at offset %d, want 10, right after the finished batch", first)
	}
}

// A4, A5, K6, S3: shutting down while a failed partition waits out its retry
// backoff (an hour here) does not wait for the backoff: Run returns nil,
// well within ShutdownTimeout, after the Shutdown hook ran; what finished
// before the failure is committed and the failed message is not, so a
// restart resumes at it — sequential, parallel and exactly-once alike.
func TestShutdownDuringRetryBackoff(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []ferry.TopicOption
		txn  bool
	}{
		{"sequential", nil, false},
		{"parallel", []ferry.TopicOption{ferry.Parallel(4)}, false},
		// One batch per transaction, so the batch before the failure commits.
		{"exactly-once", []ferry.TopicOption{ferry.WithDelivery(ferry.ExactlyOnce), ferry.TransactionBatches(1)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newScenario(t, cluster(t), 1)
			s.produce(0, 20)
			failed := make(chan struct{})
			var once sync.Once
			var shutdownRan atomic.Bool
			sc := scripted{
				consume: func(_ context.Context, _ *ferry.Claim, b *ferry.Batch) error {
					for _, m := range b.Messages {
						if m.Offset == 10 {
							once.Do(func() { close(failed) })
							return errors.New("offset 10 fails")
						}
					}
					return nil
				},
				shutdown: func(context.Context, *ferry.Claim) { shutdownRan.Store(true) },
			}
			topicOpts := append([]ferry.TopicOption{ferry.MaxMessages(10), ferry.Retry(ferry.ConstantBackoff(time.Hour))}, tc.opts...)
			more := []ferry.Option{ferry.ShutdownTimeout(30 * time.Second), s.routeTo(sc.factory(), topicOpts...)}
			var app *running
			if tc.txn {
				app = s.startTransactional(more...)
			} else {
				app = s.start(more...)
			}
			s.waitClosed("failed at offset 10", failed)
			s.waitCommittedAt(0, 10) // what came before the failure
			if err := app.stop(t); err != nil {
				t.Fatalf("Run = %v, want nil: a retry waiting out its backoff is not in flight", err)
			}
			if !shutdownRan.Load() {
				t.Error("the Shutdown hook did not run")
			}
			if got := s.committed(); got[0] != 10 {
				t.Errorf("committed %v after shutdown, want 10: the failed message is not committed", got)
			}
			if first := s.restart(10); first != 10 {
				t.Errorf("restart began at offset %d, want 10, the failed message", first)
			}
		})
	}
}
