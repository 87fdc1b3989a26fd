package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrytest"
	"github.com/peterbourgon/ff/v3/ffcli"
	"github.com/twmb/franz-go/pkg/kgo"
)

// demo narrates ferry's at-least-once runtime on an embedded cluster: batches
// per partition, a failing batch retried, a second member taking over
// partitions, commits, and a final count of lost and duplicated messages.
type demo struct {
	out       io.Writer
	mu        sync.Mutex
	seen      map[int32]map[int64]int
	failed    bool
	assigned  map[string]int // member → partitions assigned to it so far
	processed map[string]int // member → messages it processed
}

func (d *demo) printf(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.out, format, args...)
}

// member builds the consumer factory of one group member.
func (d *demo) member(name string) ferry.NewConsumer {
	return func(claim *ferry.Claim) ferry.Consumer {
		d.mu.Lock()
		d.assigned[name]++
		d.mu.Unlock()
		d.printf("  %s  %s/%d  assigned\n", name, claim.Topic(), claim.Partition())
		return &demoConsumer{d: d, member: name, claim: claim}
	}
}

type demoConsumer struct {
	d      *demo
	member string
	claim  *ferry.Claim
}

func (c *demoConsumer) Consume(_ context.Context, b *ferry.Batch) error {
	time.Sleep(15 * time.Millisecond) // pretend to work
	first, last := b.Messages[0].Offset, b.Last().Offset
	d := c.d
	d.mu.Lock()
	fail := !d.failed && b.Partition == 2 && first >= 200
	if fail {
		d.failed = true
	}
	d.mu.Unlock()
	if fail {
		d.printf("  %s  %s/%d  offsets %4d–%-4d  FAILED (simulated outage) → partition paused, retried from %d\n",
			c.member, b.Topic, b.Partition, first, last, first)
		return errors.New("simulated outage")
	}
	d.mu.Lock()
	for _, m := range b.Messages {
		d.seen[m.Partition][m.Offset]++
	}
	d.processed[c.member] += len(b.Messages)
	d.mu.Unlock()
	note := ""
	if b.Attempt > 1 {
		note = fmt.Sprintf("  (attempt %d)", b.Attempt)
	}
	d.printf("  %s  %s/%d  offsets %4d–%-4d  %3d msgs%s\n", c.member, b.Topic, b.Partition, first, last, len(b.Messages), note)
	return nil
}

func (c *demoConsumer) Revoked(context.Context) error {
	c.d.printf("  %s  %s/%d  revoked: in-flight work finished and committed, handing over\n", c.member, c.claim.Topic(), c.claim.Partition())
	return nil
}

func tourCmd(stdout, stderr io.Writer) *ffcli.Command {
	fs := newFlags("tour", stderr)
	perWave := fs.Int("messages", 500, "messages per partition in each of the two waves")
	verbose := fs.Bool("v", false, "show ferry's own log")
	return &ffcli.Command{
		Name:       "tour",
		ShortUsage: "ferry tour [-messages N] [-v]",
		ShortHelp:  "a narrated walk through ferry's at-least-once runtime on an embedded cluster",
		LongHelp: `Two members of a group consume a topic of four partitions: batches, a failing
batch retried, a partition paused, a second member taking partitions over, the
commits, and a final count of lost and duplicated messages. Needs no setup.

EXAMPLES
  ferry tour
  ferry tour -messages 100 -v`,
		FlagSet: fs,
		Exec: noArgs(fs, func(ctx context.Context) error {
			var bad flagErrors
			bad.atLeast("messages", *perWave, 1)
			if err := bad.err(); err != nil {
				return err
			}
			const partitions = 4
			c, err := ferrytest.StartEmbedded()
			if err != nil {
				return err
			}
			defer c.Close()
			d := &demo{out: stdout, seen: make(map[int32]map[int64]int), assigned: map[string]int{}, processed: map[string]int{}}
			for p := range int32(partitions) {
				d.seen[p] = make(map[int64]int)
			}
			const topic, group = "orders", "billing"
			if err := c.CreateTopic(ctx, topic, partitions); err != nil {
				return err
			}
			d.printf("ferry tour — embedded Kafka cluster at %s\n", strings.Join(c.Brokers(), ","))
			d.printf("topic %q with %d partitions, consumer group %q, at-least-once, batches of up to 100\n\n", topic, partitions, group)

			logLevel := slog.LevelError + 1
			if *verbose {
				logLevel = slog.LevelInfo
			}
			var commits atomic.Int32
			base := []ferry.Option{
				ferry.Brokers(c.Brokers()...),
				ferry.Logger(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: logLevel}))),
				ferry.CommitInterval(time.Second),
				ferry.ClientOptions(kgo.SessionTimeout(6 * time.Second)),
				ferry.OnCommit(func(cm ferry.Commit) {
					commits.Add(1)
					d.printf("        commit (%s): %s\n", cm.Reason, formatOffsets(cm.Offsets[topic]))
				}),
			}
			// join starts a group member; stop drains it and returns Run's error.
			join := func(member string) (stop func() error, err error) {
				app, err := ferry.New(append(base, ferry.Route(group, topic, d.member(member), ferry.MaxMessages(100),
					ferry.Retry(ferry.ConstantBackoff(300*time.Millisecond))))...)
				if err != nil {
					return nil, err
				}
				mctx, cancel := context.WithCancel(ctx)
				done := make(chan error, 1)
				go func() { done <- app.Run(mctx) }()
				return sync.OnceValue(func() error { cancel(); return <-done }), nil
			}

			if err := produceWave(ctx, c, topic, partitions, 0, *perWave); err != nil {
				return err
			}
			d.printf("produced %d messages; member A joins the group\n", partitions**perWave)
			stopA, err := join("A")
			if err != nil {
				return err
			}
			defer func() { _ = stopA() }()
			if err := waitProcessed(ctx, d, partitions**perWave); err != nil {
				return err
			}

			d.printf("\nmember B joins: A hands over some partitions, then %d more messages arrive\n", partitions**perWave)
			stopB, err := join("B")
			if err != nil {
				return err
			}
			defer func() { _ = stopB() }()
			if err := waitAssigned(ctx, d, "B"); err != nil {
				return err
			}
			if err := produceWave(ctx, c, topic, partitions, *perWave, 2**perWave); err != nil {
				return err
			}
			if err := waitProcessed(ctx, d, 2*partitions**perWave); err != nil {
				return err
			}

			d.printf("\nshutting down: in-flight batches finish, final commit, members leave\n")
			if err := stopB(); err != nil {
				return err
			}
			if err := stopA(); err != nil {
				return err
			}
			committed, err := c.Committed(context.WithoutCancel(ctx), group, topic)
			if err != nil {
				return err
			}
			total := 2 * partitions * *perWave
			processed, dups, lost := 0, 0, 0
			d.mu.Lock()
			for p := range int32(partitions) {
				for o := int64(0); o < int64(2**perWave); o++ {
					switch n := d.seen[p][o]; {
					case n == 0:
						lost++
					default:
						processed++
						dups += n - 1
					}
				}
			}
			d.mu.Unlock()
			byA, byB := d.processed["A"], d.processed["B"]
			d.printf("\nsummary: %d produced, %d processed (A %d, B %d), %d lost, %d duplicated, %d commits\n",
				total, processed, byA, byB, lost, dups, commits.Load())
			d.printf("committed offsets: %s (every partition at its end: %v)\n", formatOffsets(committed), allAt(committed, partitions, int64(2**perWave)))
			if lost != 0 {
				return fmt.Errorf("tour lost %d messages", lost)
			}
			if byB == 0 {
				return errors.New("tour: member B processed nothing, so no hand-off was shown")
			}
			return nil
		}),
	}
}

// waitAssigned waits until the group gave member at least one partition:
// the rebalance that hands partitions over is done.
func waitAssigned(ctx context.Context, d *demo, member string) error {
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := ferrytest.WaitFor(wctx, func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.assigned[member] > 0
	}); err != nil {
		return fmt.Errorf("tour: member %s was never assigned a partition: %w", member, err)
	}
	return nil
}

func produceWave(ctx context.Context, c *ferrytest.Cluster, topic string, partitions int32, from, to int) error {
	var recs []*kgo.Record
	for i := from; i < to; i++ {
		for p := range partitions {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Key: []byte(fmt.Sprintf("order-%d", i)), Value: []byte(fmt.Sprintf(`{"order":%d}`, i))})
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		return err
	}
	defer cl.Close()
	return cl.ProduceSync(ctx, recs...).FirstErr()
}

func waitProcessed(ctx context.Context, d *demo, n int) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	return ferrytest.WaitFor(ctx, func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		got := 0
		for _, offs := range d.seen {
			got += len(offs)
		}
		return got >= n
	})
}

func formatOffsets(m map[int32]int64) string {
	var parts []string
	for _, p := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("p%d→%d", p, m[p]))
	}
	return strings.Join(parts, " ")
}

func allAt(m map[int32]int64, partitions int32, end int64) bool {
	for p := range partitions {
		if m[p] != end {
			return false
		}
	}
	return true
}
