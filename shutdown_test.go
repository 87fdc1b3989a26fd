package ferry_test

import (
	"context"
	"errors"
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
