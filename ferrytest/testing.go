package ferrytest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TB is what the helpers below need of a test or a benchmark; *testing.T
// and *testing.B have it. (Package ferrytest does not import package
// testing, so a program that runs the embedded cluster does not link it.)
type TB interface {
	Helper()
	Fatal(args ...any)
	Cleanup(func())
}

// New returns the cluster Start returns, for a test: it fails the test when
// the cluster cannot be reached or started, and closes it when the test
// ends.
func New(t TB, opts ...kfake.Opt) *Cluster {
	t.Helper()
	c, err := Start(opts...)
	return closedAtEnd(t, c, err)
}

// NewEmbedded is New for StartEmbedded: an embedded cluster even when
// FERRY_BROKERS is set, for tests that inject faults through kfake.
func NewEmbedded(t TB, opts ...kfake.Opt) *Cluster {
	t.Helper()
	c, err := StartEmbedded(opts...)
	return closedAtEnd(t, c, err)
}

func closedAtEnd(t TB, c *Cluster, err error) *Cluster {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// Context returns a context that ends after d, or when the test ends.
func Context(t TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// NewTopic creates a topic with a name of its own and the given number of
// partitions on c, failing the test when it cannot within 20 s, and
// returns its name.
func NewTopic(t TB, c *Cluster, partitions int32) string {
	t.Helper()
	name := UniqueName("t")
	if err := c.CreateTopic(Context(t, 20*time.Second), name, partitions); err != nil {
		t.Fatal(err)
	}
	return name
}

// Fill writes n messages with values "0", "1", … to one partition of a
// topic (ProduceN), failing the test when it cannot within 30 s.
func Fill(t TB, c *Cluster, topic string, partition int32, n int) {
	t.Helper()
	if _, err := c.ProduceN(Context(t, 30*time.Second), topic, partition, n); err != nil {
		t.Fatal(err)
	}
}

// ReadAll reads a topic from the start as a read_committed consumer — a
// dead-letter topic, say — until at least n records arrived, failing the
// test when they do not within 20 s. It then polls briefly once more, so
// that a record beyond the n expected (a duplicate) is returned too.
func ReadAll(t TB, c *Cluster, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := c.NewClient(kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := Context(t, 20*time.Second)
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatal(fmt.Sprintf("ferrytest: read %d records of %s within 20 s, want %d", len(out), topic, n))
		}
		out = append(out, fs.Records()...)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	return append(out, cl.PollFetches(sctx).Records()...)
}

// Log keeps what a logger writes, for a test to check. It is safe for
// concurrent use.
type Log struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write keeps p.
func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String returns everything written so far.
func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Logger returns a text logger of every level, debug included, that writes
// to l — and to standard error as well when FERRY_TEST_LOG is set, to
// watch a test (go test -v) as it runs.
func (l *Log) Logger() *slog.Logger {
	var w io.Writer = l
	if os.Getenv("FERRY_TEST_LOG") != "" {
		w = io.MultiWriter(l, os.Stderr)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Running is an app that Run runs in the background.
type Running struct {
	App    *ferry.App
	t      TB
	cancel context.CancelFunc
	done   chan error
}

// Run runs app in the background until Stop or, at the latest, the end of
// the test.
func Run(t TB, app *ferry.App) *Running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{App: app, t: t, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- app.Run(ctx) }()
	t.Cleanup(func() { _ = r.Stop() })
	return r
}

// Stop cancels the app's context and returns Run's error (again, when
// called again). It fails the test when Run has not returned within 90 s.
func (r *Running) Stop() error {
	r.t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(90 * time.Second):
		r.t.Fatal("ferrytest: the app did not stop within 90 s")
		return nil
	}
}

// Returned reports whether Run returned by itself — the app stopped without
// Stop — within d (0: already), and Run's error if it did.
func (r *Running) Returned(d time.Duration) (bool, error) {
	select {
	case err := <-r.done:
		r.done <- err
		return true, err
	default:
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case err := <-r.done:
		r.done <- err
		return true, err
	case <-timer.C:
		return false, nil
	}
}
