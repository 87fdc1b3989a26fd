package ferry_test

// Interop with a real Apache Kafka broker and Kafka's own tools. These tests run only against a real broker (FERRY_BROKERS, as
// scripts/test sets it) and call Kafka's tools through scripts/kafka tool;
// the broker-kill test starts a broker of its own with scripts/kafka. Without
// FERRY_BROKERS they skip; under CI=true with FERRY_BROKERS set they never
// skip: a missing java or tool fails them.

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrytest"
)

// processedUpTo returns, per partition of topic, the offset after the highest
// one the recorder saw.
func processedUpTo(r *recorder, topic string) map[int32]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[int32]int64)
	for p, offs := range r.seen[topic] {
		for o := range offs {
			out[p] = max(out[p], o+1)
		}
	}
	return out
}

// Interop with Kafka's own tools, A1, A2, A4, A8: the offsets ferry
// commits are the group's offsets as Kafka's own kafka-consumer-groups tool
// reports them: per partition right after the last processed message, zero
// lag, the start for a partition that never had a message (A8) — and while ferry
// runs, the tool sees it as the group's one member holding every partition.
// On both group protocols.
func TestInteropCommittedOffsetsAsKafkaReportsThem(t *testing.T) {
	k := needKafkaTools(t)
	for _, proto := range protocols() {
		t.Run(proto.name, func(t *testing.T) {
			counts := []int{37, 120, 0, 251} // partition 2 stays empty
			s := newScenario(t, cluster(t), int32(len(counts)))
			tp, group := s.topic, s.group
			total := 0
			for p, n := range counts {
				if n > 0 {
					s.produce(int32(p), n)
				}
				total += n
			}
			app := s.start(ferry.ClientOptions(proto.opts...), s.route(s.rec.fn(), ferry.MaxMessages(50)))
			s.waitSeen(total)

			members := k.describeGroup(t, group, "--members")
			if len(members) != 1 || members[0]["CLIENT-ID"] != "ferry" || members[0]["#PARTITIONS"] != strconv.Itoa(len(counts)) {
				t.Errorf("kafka-consumer-groups --members: %v, want one member with CLIENT-ID ferry and #PARTITIONS %d", members, len(counts))
			}
			s.stop(app)

			rows := k.describeGroup(t, group)
			reported := make(map[int32]map[string]string)
			for _, row := range rows {
				if row["TOPIC"] != tp {
					t.Errorf("row of another topic: %v", row)
					continue
				}
				p, err := strconv.ParseInt(row["PARTITION"], 10, 32)
				if err != nil {
					t.Fatalf("PARTITION %q: %v", row["PARTITION"], err)
				}
				reported[int32(p)] = row
			}
			committed := s.committed()
			processed := processedUpTo(s.rec, tp)
			for i, n := range counts {
				p := int32(i)
				row := reported[p]
				want := strconv.Itoa(n)
				if row["CURRENT-OFFSET"] != want || row["LOG-END-OFFSET"] != want || row["LAG"] != "0" {
					t.Errorf("partition %d: Kafka reports CURRENT-OFFSET %q LOG-END-OFFSET %q LAG %q, want %s %s 0",
						p, row["CURRENT-OFFSET"], row["LOG-END-OFFSET"], row["LAG"], want, want)
				}
				if processed[p] != int64(n) || committed[p] != int64(n) {
					t.Errorf("partition %d: ferry processed up to %d and Committed reports %d, want %d for both",
						p, processed[p], committed[p], n)
				}
			}
			if t.Failed() {
				t.Logf("kafka-consumer-groups rows: %v", rows)
			}
		})
	}
}

// Interop with Kafka's own tools, B5, O3: messages written by
// another client — Kafka's own console producer, zstd-compressed — reach
// ferry as written: keys, values, headers with repeated keys in their order,
// null and empty header values, nil and empty keys, tombstones (nil values,
// with and without headers), UTF-8 text, offsets, timestamps and the leader
// epoch.
//
// Kafka's ConsoleProducer is used rather than kcat: it ships with the broker
// the suite already runs (no system package to install in CI), and its line
// reader (LineMessageReader, 4.3.1) parses headers, keys and, with
// null.marker, null keys, values and header values.
func TestInteropMessagesFromKafkasConsoleProducer(t *testing.T) {
	k := needKafkaTools(t)
	s := newScenario(t, cluster(t), 1) // one partition: the lines' order is the offsets' order
	tp := s.topic

	type header struct {
		key   string
		value []byte
	}
	type line struct {
		text    string // headers TAB key TAB value; NULL is null
		key     []byte
		value   []byte
		headers []header
	}
	lines := []line{
		{"trace:1,trace:2,span:x,trace:3\torder-1\tcreated", []byte("order-1"), []byte("created"),
			[]header{{"trace", []byte("1")}, {"trace", []byte("2")}, {"span", []byte("x")}, {"trace", []byte("3")}}},
		{"NULL\torder-1\tNULL", []byte("order-1"), nil, nil}, // a tombstone, no headers
		{"nullable:NULL,empty:\tNULL\tno key", nil, []byte("no key"), []header{{"nullable", nil}, {"empty", []byte{}}}},
		{"kind:empty\t\t", []byte{}, []byte{}, []header{{"kind", []byte("empty")}}},
		{"ünï:cödé ✓\tключ\t値 ✓", []byte("ключ"), []byte("値 ✓"), []header{{"ünï", []byte("cödé ✓")}}},
		{"deleted-by:ops,deleted-by:audit\torder-2\tNULL", []byte("order-2"), nil, // a tombstone with headers
			[]header{{"deleted-by", []byte("ops")}, {"deleted-by", []byte("audit")}}},
	}
	var input strings.Builder
	for _, l := range lines {
		input.WriteString(l.text + "\n")
	}
	before := time.Now().Add(-time.Second)
	k.run(t, time.Minute, strings.NewReader(input.String()), "ConsoleProducer",
		"--bootstrap-server", k.brokers, "--topic", tp, "--compression-codec", "zstd",
		"--command-property", "acks=all",
		"--reader-property", "parse.headers=true",
		"--reader-property", "parse.key=true",
		"--reader-property", "null.marker=NULL")
	after := time.Now().Add(time.Second)

	m := s.messages()
	app := s.start(s.route(m.fn()))
	s.waitSeen(len(lines))
	s.stop(app)
	for i, want := range lines {
		got := m.at(t, tp, 0, int64(i))
		if !sameBytes(got.Key, want.key) {
			t.Errorf("line %d: key %s, want %s", i, describe(got.Key), describe(want.key))
		}
		if !sameBytes(got.Value, want.value) {
			t.Errorf("line %d: value %s, want %s", i, describe(got.Value), describe(want.value))
		}
		if got.Timestamp.Before(before) || got.Timestamp.After(after) {
			t.Errorf("line %d: timestamp %v, want the producer's time, within [%v, %v]", i, got.Timestamp, before, after)
		}
		if got.LeaderEpoch < 0 {
			t.Errorf("line %d: leader epoch %d, want the broker's (>= 0)", i, got.LeaderEpoch)
		}
		if len(got.Headers) != len(want.headers) {
			t.Errorf("line %d: headers %v, want %d headers", i, got.Headers, len(want.headers))
			continue
		}
		for j, h := range want.headers {
			if got.Headers[j].Key != h.key || !sameBytes(got.Headers[j].Value, h.value) {
				t.Errorf("line %d: header %d is %q=%s, want %q=%s (repeated keys kept, in order)",
					i, j, got.Headers[j].Key, describe(got.Headers[j].Value), h.key, describe(h.value))
			}
		}
	}
	if d := s.rec.duplicates(tp); d != 0 {
		t.Errorf("%d duplicate deliveries", d)
	}
}

// ferryFirstSeen returns, per partition of topic, each offset ferry
// processed and when it first did.
func ferryFirstSeen(r *recorder, topic string) map[int32]map[int64]time.Time {
	out := make(map[int32]map[int64]time.Time)
	for _, d := range r.snapshot() {
		if d.topic != topic {
			continue
		}
		if out[d.partition] == nil {
			out[d.partition] = make(map[int64]time.Time)
		}
		for _, o := range d.offsets {
			if _, ok := out[d.partition][o]; !ok {
				out[d.partition][o] = d.at
			}
		}
	}
	return out
}

// javaGroupArgs are VerifiableConsumer's flags for a group ferry shares on
// proto. Classic: kgo (so ferry) offers only cooperative-sticky, while
// VerifiableConsumer defaults to RangeAssignor alone (not KafkaConsumer's
// range+cooperative-sticky), so the Java member must be told to use
// cooperative-sticky or the join fails with INCONSISTENT_GROUP_PROTOCOL.
func javaGroupArgs(proto string) []string {
	if proto == "kip848" {
		return []string{"--group-protocol", "consumer"}
	}
	return []string{"--group-protocol", "classic", "--session-timeout", "10000",
		"--assignment-strategy", "org.apache.kafka.clients.consumer.CooperativeStickyAssignor"}
}

// Interop with Kafka's own tools, A3, S2, B4: a member that is not
// ferry — Kafka's VerifiableConsumer, in Java — shares ferry's group while
// messages are produced. It joins (ferry hands partitions over), then leaves
// on SIGTERM (ferry takes them back). Across both members every message is
// consumed; ferry's hand-off to Java duplicates nothing, as ferry committed
// before letting go; and ferry ends with everything committed. On both
// group protocols.
func TestInteropSharesGroupWithKafkasJavaConsumer(t *testing.T) {
	k := needKafkaTools(t)
	for _, proto := range protocols() {
		t.Run(proto.name, func(t *testing.T) {
			const partitions = 6
			s := newScenario(t, cluster(t), partitions)
			c, tp, group, rec := s.c, s.topic, s.group, s.rec
			slow := func(_ context.Context, b *ferry.Batch) error {
				time.Sleep(2 * time.Millisecond)
				rec.record(b)
				return nil
			}
			if err := produceSlowly(c, tp, partitions, 0, 200, 500*time.Millisecond); err != nil {
				t.Fatal(err)
			}
			app := s.start(ferry.ClientOptions(proto.opts...), s.route(slow, ferry.MaxMessages(20)))
			s.waitSeen(300)

			// Java joins mid-stream and takes some of ferry's partitions over.
			java := startJavaConsumer(t, k, tp, group, javaGroupArgs(proto.name)...)
			if err := ferrytest.WaitFor(ctxFor(t, 40*time.Second), func() bool { return len(java.owned(tp)) > 0 || java.exited() }); err != nil || java.exited() {
				t.Fatalf("the Java member was assigned nothing (exited: %v); its events: %+v", java.exited(), java.snapshot())
			}
			// Both members consume live.
			if err := produceSlowly(c, tp, partitions, 200, 500, 3*time.Second); err != nil {
				t.Fatal(err)
			}
			// Java leaves while messages keep coming; ferry takes its partitions back.
			produced := make(chan error, 1)
			go func() { produced <- produceSlowly(c, tp, partitions, 500, 700, 2*time.Second) }()
			time.Sleep(500 * time.Millisecond)
			owned := java.owned(tp)
			java.stop(t)
			if err := <-produced; err != nil {
				t.Fatal(err)
			}
			// Only ferry is left for these, on Java's former partitions too.
			if err := produceSlowly(c, tp, partitions, 700, 750, 300*time.Millisecond); err != nil {
				t.Fatal(err)
			}
			t.Logf("the Java member held partitions %v when it was stopped", owned)
			ends := highWatermarks(t, c, tp, partitions)
			missing := func() []string {
				byFerry, byJava := ferryFirstSeen(rec, tp), java.consumed(tp)
				var out []string
				for p, end := range ends {
					for o := range end {
						_, f := byFerry[p][o]
						_, j := byJava[p][o]
						if !f && !j {
							out = append(out, fmt.Sprintf("%d@%d", p, o))
						}
					}
				}
				return out
			}
			if err := ferrytest.WaitFor(ctxFor(t, 30*time.Second), func() bool { return len(missing()) == 0 }); err != nil {
				m := missing()
				sort.Strings(m)
				t.Fatalf("%d messages consumed by neither member (A3, S2), e.g. %v", len(m), m[:min(len(m), 20)])
			}
			if got, ok := awaitCommitted(c, group, tp, ends, 15*time.Second); !ok {
				t.Errorf("committed %v, want the end offsets %v once ferry took every partition back", got, ends)
			}
			s.stop(app)
			checkJavaHandOffs(t, rec, java, tp)
		})
	}
}

// checkJavaHandOffs compares who consumed what. An offset ferry processed before
// the Java member consumed it breaks A3 (ferry commits before letting a
// partition go); the other order is the Java member's own redelivery (a
// failed commit), only logged.
func checkJavaHandOffs(t *testing.T, rec *recorder, java *javaConsumer, topic string) {
	t.Helper()
	byFerry, byJava := ferryFirstSeen(rec, topic), java.consumed(topic)
	var ferryThenJava, javaThenFerry []string
	nJava := 0
	for p, offs := range byJava {
		nJava += len(offs)
		for o, jAt := range offs {
			fAt, ok := byFerry[p][o]
			switch {
			case !ok:
			case fAt.Before(jAt):
				ferryThenJava = append(ferryThenJava, fmt.Sprintf("%d@%d", p, o))
			default:
				javaThenFerry = append(javaThenFerry, fmt.Sprintf("%d@%d", p, o))
			}
		}
	}
	commits, failed := 0, 0
	for _, ev := range java.snapshot() {
		if ev.Name == "offsets_committed" {
			commits++
			if ev.Success != nil && !*ev.Success {
				failed++
			}
		}
	}
	t.Logf("ferry processed %d distinct offsets (%d redelivered), the Java member %d; Java commits %d (%d failed); consumed by Java then ferry: %d",
		rec.distinct(topic), rec.duplicates(topic), nJava, commits, failed, len(javaThenFerry))
	if nJava == 0 {
		t.Error("the Java member consumed nothing")
	}
	if len(ferryThenJava) > 0 {
		sort.Strings(ferryThenJava)
		t.Errorf("%d offsets processed by ferry were consumed again by the Java member after the hand-off (A3: ferry commits before letting go), e.g. %v",
			len(ferryThenJava), ferryThenJava[:min(len(ferryThenJava), 20)])
	}
}

// Interop with Kafka's own tools, S2, A2, A4, O1: the broker is
// killed with SIGKILL mid-stream while ferry consumes at least once — one app
// per group protocol, each on its own topic — and restarted on the same data
// dir (about 15 s: the restarted broker waits out its old registration).
// Each app keeps running through the outage and after it: every message the
// broker acknowledged is processed at least once, and the committed offsets
// reach the end of every partition, while running and after shutdown.
//
// The test kills a broker of its own (scripts/kafka up in a temporary dir),
// never the suite's: go test ./... runs other packages' tests (cmd/ferry)
// against the suite's broker at the same time, and they would fail during
// the outage. The suite's broker stays up whatever happens here.
func TestInteropSurvivesBrokerKill9(t *testing.T) {
	k := needKafkaTools(t)
	b := startPrivateBroker(t, k)
	t.Setenv("FERRY_BROKERS", b.addr)
	c := cluster(t)
	const partitions = 4
	type member struct {
		proto     protocol
		tp, group string
		seen      *seenValues
		app       *running
		prod      *steadyProducer
		resumed   int // acknowledged when the broker came back
	}
	var members []*member
	for _, proto := range protocols() {
		m := &member{proto: proto, tp: topic(t, c, partitions), group: ferrytest.UniqueName("g"), seen: &seenValues{seen: make(map[string]int)}}
		m.app = start(t, opts(t, c, ferry.ShutdownTimeout(30*time.Second), ferry.ClientOptions(proto.opts...),
			ferry.RouteFunc(m.group, m.tp, m.seen.fn(), ferry.MaxMessages(50)))...)
		m.prod = produceSteadily(t, c.Brokers(), m.tp, partitions)
		members = append(members, m)
	}
	for _, m := range members {
		if err := ferrytest.WaitFor(ctxFor(t, 30*time.Second), func() bool { d, _ := m.seen.count(); return d >= 300 }); err != nil {
			t.Fatalf("%s: ferry processed fewer than 300 messages before the kill", m.proto.name)
		}
	}

	b.kill9(t)
	killed := time.Now()
	if out, err := b.kafka(3*time.Minute, "restart"); err != nil {
		t.Fatalf("scripts/kafka restart: %v\n%s", err, out)
	} else if addr := tailLines(strings.TrimSpace(out), 1); addr != b.addr {
		t.Fatalf("the broker came back on %s, want %s", addr, b.addr)
	}
	t.Logf("broker back %s after SIGKILL", time.Since(killed).Round(100*time.Millisecond))
	for _, m := range members {
		m.resumed = len(m.prod.ackedSoFar())
	}
	// Keep producing a while after the restart: ferry must take up the new messages too.
	for _, m := range members {
		if err := ferrytest.WaitFor(ctxFor(t, 30*time.Second), func() bool { return len(m.prod.ackedSoFar()) >= m.resumed+300 }); err != nil {
			t.Fatalf("%s: the producer got no acknowledgements within 30 s of the restart", m.proto.name)
		}
	}
	for _, m := range members {
		m.prod.halt()
	}

	for _, m := range members {
		t.Run(m.proto.name, func(t *testing.T) {
			acked := m.prod.ackedSoFar()
			if m.prod.err != nil {
				t.Logf("some produce requests failed (not counted as acknowledged): %v", m.prod.err)
			}
			if returned, err := m.app.Returned(0); returned {
				t.Fatalf("Run returned during or after the outage: %v", err)
			}
			if err := ferrytest.WaitFor(ctxFor(t, 30*time.Second), func() bool { return len(m.seen.missingOf(acked)) == 0 }); err != nil {
				miss := m.seen.missingOf(acked)
				t.Fatalf("%d of %d acknowledged messages never processed (S2), e.g. %v", len(miss), len(acked), miss[:min(len(miss), 20)])
			}
			ends := highWatermarks(t, c, m.tp, partitions)
			if got, ok := awaitCommitted(c, m.group, m.tp, ends, 20*time.Second); !ok {
				t.Errorf("committed %v while running, want the end offsets %v (A2)", got, ends)
			}
			if err := m.app.stop(t); err != nil {
				t.Errorf("Run: %v", err)
			}
			if got, ok := awaitCommitted(c, m.group, m.tp, ends, 0); !ok {
				t.Errorf("committed %v after shutdown, want the end offsets %v (A4)", got, ends)
			}
			distinct, total := m.seen.count()
			t.Logf("%d acknowledged (%d by the time the broker was back); ferry processed %d distinct values in %d deliveries (%d redelivered after the outage)",
				len(acked), m.resumed, distinct, total, total-distinct)
		})
	}
}
