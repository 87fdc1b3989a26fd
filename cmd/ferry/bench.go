package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/cmd/ferry/internal/bench"
	"github.com/ferrykit/ferry/ferryprom"
	"github.com/ferrykit/ferry/ferrytest"
	"github.com/peterbourgon/ff/v3/ffcli"
	"github.com/prometheus/client_golang/prometheus"
)

// runBench measures ferry against a raw franz-go loop — and, when asked,
// other Go clients and Kafka's Java consumer — on one topic, each contender
// in a process of its own, rotating their order every round.
func benchCmd(stdout, stderr io.Writer) *ffcli.Command {
	fs := newFlags("bench", stderr)
	brokers := fs.String("brokers", "", "cluster to use (default: $FERRY_BROKERS, else an embedded cluster in a child process)")
	sec := addSecurityFlags(fs)
	messages := fs.Int("messages", 1_000_000, "messages to produce and consume per round")
	partitions := fs.Int("partitions", 8, "partitions of the topic")
	size := fs.Int("size", 100, "message size in bytes")
	distinct := fs.Bool("distinct", false, "give every message its own random value (incompressible) instead of one repeated value")
	rounds := fs.Int("rounds", 3, "rounds; each consumes the whole topic once with each contender")
	maxWait := fs.Duration("max-wait", 0, "ferry's MaxWait (0: its default)")
	queueBytes := fs.Int("queue-bytes", 0, "ferry's QueueBytes (0: its default)")
	work := fs.Duration("work", 0, "time ferry and the raw loop spend per batch of 100 messages (a handler slower than the fetches)")
	kip848 := fs.Bool("kip848", false, "ferry and the raw loop join with the KIP-848 consumer group protocol instead of the classic one")
	pipeline := fs.String("pipeline", "", "instead: consume→produce, at-least-once vs exactly-once with these transaction spans: default (ferry's), batch counts (one poll per transaction) or intervals, e.g. default,1,16,250ms")
	kafkaScript := fs.String("kafka-perf", "", "also run Kafka's ConsumerPerformance through this scripts/kafka (real broker only)")
	peers := fs.String("peers", "", "also run these Go clients: sarama,kafka-go,confluent (built from -peers-dir)")
	peersDir := fs.String("peers-dir", "cmd/ferry/internal/bench/peers", "the peers module, built with go build")
	compare := fs.String("compare", "", "also run the ferry contender of this other ferry binary (an A/B of two builds)")
	only := fs.String("only", "", "run one contender only: raw or ferry (for profiling)")
	events := fs.Bool("events", false, "also run ferry with an event subscriber (counting every event) and with the Prometheus metrics of ferryprom, to measure what reporting costs")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the measured rounds to this file (samples labelled contender=raw|ferry; runs them in this process)")
	traceFile := fs.String("trace", "", "write an execution trace of the measured rounds to this file (runs the contenders in this process)")
	check := fs.Bool("check", false, "exit non-zero when a target is missed (see docs/BENCHMARKS.md)")
	db := fs.String("db", "", "instead: one row per message into PostgreSQL at this URL — ferrypg exactly-once vs at-least-once with the same inserts and no offset row vs a naive insert-then-commit loop")
	slow := fs.Bool("slow", false, "instead: handlers that wait on I/O (1 ms per message; a heavy tail), one partition of -slow-messages, sequential vs parallel vs a per-batch fan-out")
	slowN := fs.Int("slow-messages", 10_000, "messages per slow-handler case")
	inFlight := fs.Int("in-flight", 128, "the parallel contenders' messages in flight per partition (-slow)")
	pcScript := fs.String("parallel-consumer", "", "also run Confluent's Parallel Consumer (KEY ordering) through this scripts/parallel-consumer (-slow)")
	oneContender := fs.String("contender", "", "internal: consume -topic as -group with this contender (raw, ferry, events or prometheus), print its result as JSON")
	topicFlag := fs.String("topic", "", "internal: the topic for -contender")
	groupFlag := fs.String("group", "", "internal: the group for -contender")
	return &ffcli.Command{
		Name:       "bench",
		ShortUsage: "ferry bench [-brokers B] [-messages N] [-rounds N] [-check] ...",
		ShortHelp:  "measure ferry against a raw franz-go poll loop (and, when asked, other clients)",
		LongHelp: `Each contender consumes the same topic in a process of its own, their order
rotating every round; the medians are compared with the targets of
docs/BENCHMARKS.md (-check exits 1 when one is missed). Without -brokers (and
$FERRY_BROKERS) the cluster is embedded in a child process.

EXAMPLES
  ferry bench -messages 200000 -rounds 3
  ferry bench -brokers 127.0.0.1:9092 -distinct -messages 2000000 -rounds 5 -check
  ferry bench -slow
  ferry bench -pipeline default,1,16,250ms`,
		FlagSet: fs,
		Exec: noArgs(fs, func(ctx context.Context) (err error) {
			if *brokers == "" {
				*brokers = os.Getenv("FERRY_BROKERS")
			}
			// The contenders' clients, in this process and in the child
			// processes, read the TLS and SASL settings from the environment.
			for _, kv := range sec.env() {
				k, v, _ := strings.Cut(kv, "=")
				if err := os.Setenv(k, v); err != nil {
					return err
				}
			}
			if _, err := sec.settings(); err != nil {
				return usagef("bench: %w", err)
			}
			var bad flagErrors
			bad.atLeast("messages", *messages, 1)
			bad.atLeast("partitions", *partitions, 1)
			bad.atLeast("size", *size, 0)
			bad.atLeast("rounds", *rounds, 1)
			bad.notNegative("max-wait", *maxWait)
			bad.notNegative("work", *work)
			bad.atLeast("queue-bytes", *queueBytes, 0)
			bad.atLeast("slow-messages", *slowN, 1)
			bad.atLeast("in-flight", *inFlight, 1)
			if *only != "" && *only != "raw" && *only != "ferry" {
				bad = append(bad, fmt.Errorf("-only %q: must be raw or ferry", *only))
			}
			if err := bad.err(); err != nil {
				return err
			}
			var topts []ferry.TopicOption
			if *maxWait > 0 {
				topts = append(topts, ferry.MaxWait(*maxWait))
			}
			if *queueBytes > 0 {
				topts = append(topts, ferry.QueueBytes(*queueBytes))
			}
			how := bench.Contender{KIP848: *kip848, Work: *work, TopicOptions: topts}
			if *oneContender != "" {
				return runContender(ctx, stdout, *oneContender, strings.Split(*brokers, ","), *topicFlag, *groupFlag, *messages, how)
			}
			var seeds []string
			where := "external cluster " + *brokers
			if *brokers != "" {
				seeds = strings.Split(*brokers, ",")
			} else {
				addr, stop, err := childCluster(ctx, stderr)
				if err != nil {
					return err
				}
				defer stop()
				seeds = []string{addr}
				where = "embedded cluster (kfake) in a child process at " + addr
			}
			var t targets
			defer func() {
				if err == nil && *check {
					err = t.err()
				}
			}()
			if *slow {
				return benchSlow(ctx, stdout, seeds, where, *slowN, *inFlight, *rounds, *pcScript, &t)
			}
			topic := ferrytest.UniqueName("bench")
			fmt.Fprintf(stdout, "ferry bench: %d × %d-byte messages, %d partitions, topic %s, %s\n", *messages, *size, *partitions, topic, where)
			fmt.Fprintf(stdout, "machine: %s/%s, %d CPUs, %s\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())
			began := time.Now()
			if err := bench.Produce(ctx, seeds, topic, int32(*partitions), *messages, *size, *distinct); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "produced in %s\n\n", time.Since(began).Round(time.Millisecond))
			if *db != "" {
				return benchDB(ctx, stdout, seeds, topic, *messages, *rounds, *db, &t)
			}
			if *pipeline != "" {
				return benchPipeline(ctx, stdout, seeds, topic, int32(*partitions), *messages, *rounds, *pipeline, *kafkaScript, &t)
			}
			// Warm-up: the first read of a fresh topic is slower for whoever goes
			// first; it is not measured.
			if _, err := bench.Raw(ctx, seeds, topic, ferrytest.UniqueName("warmup"), *messages, bench.Contender{}); err != nil {
				return err
			}
			inProcess := *cpuprofile != "" || *traceFile != ""
			if *cpuprofile != "" {
				f, err := os.Create(*cpuprofile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			if *traceFile != "" {
				f, err := os.Create(*traceFile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := trace.Start(f); err != nil {
					return err
				}
				defer trace.Stop()
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			// A contender consumes the whole topic as a fresh group.
			type contender struct {
				name string
				run  func(group string) (bench.Result, error)
			}
			own := func(name string, fn func(context.Context, []string, string, string, int, bench.Contender) (bench.Result, error)) contender {
				return contender{name, func(group string) (res bench.Result, err error) {
					if !inProcess {
						bin, as := self, name
						if name == "compare" {
							bin, as = *compare, "ferry"
						}
						argv := []string{bin, "bench", "-contender", as, "-brokers", strings.Join(seeds, ","), "-topic", topic, "-group", group,
							"-messages", strconv.Itoa(*messages), "-work", work.String(), "-max-wait", maxWait.String(), "-queue-bytes", strconv.Itoa(*queueBytes)}
						if *kip848 {
							argv = append(argv, "-kip848")
						}
						res, err := bench.Child(ctx, self, argv...)
						if name == "compare" {
							res.Name = "ferry (" + filepath.Base(bin) + ")"
						}
						return res, err
					}
					// Labels (inherited by kgo's goroutines) split the profile
					// by contender: pprof -tagfocus contender=raw.
					pprof.Do(ctx, pprof.Labels("contender", name), func(ctx context.Context) {
						defer trace.StartRegion(ctx, name).End()
						res, err = fn(ctx, seeds, topic, group, *messages, how)
					})
					runtime.GC()
					return res, err
				}}
			}
			var contenders []contender
			if *only != "ferry" {
				contenders = append(contenders, own("raw", bench.Raw))
			}
			if *only != "raw" {
				contenders = append(contenders, own("ferry", bench.Ferry))
			}
			if *events && *only == "" {
				contenders = append(contenders, own("events", ferryEvents), own("prometheus", ferryPrometheus))
			}
			if *compare != "" && !inProcess {
				contenders = append(contenders, own("compare", bench.Ferry))
			}
			if *peers != "" && *only == "" {
				bin, err := buildPeers(ctx, *peersDir)
				if err != nil {
					return err
				}
				defer os.RemoveAll(filepath.Dir(bin))
				for _, client := range strings.Split(*peers, ",") {
					client = strings.TrimSpace(client)
					contenders = append(contenders, contender{client, func(group string) (bench.Result, error) {
						return bench.Child(ctx, self, bin, "-client", client, "-brokers", strings.Join(seeds, ","), "-topic", topic, "-group", group, "-messages", strconv.Itoa(*messages))
					}})
				}
			}
			if *kafkaScript != "" && *only == "" {
				contenders = append(contenders, contender{"java", func(group string) (bench.Result, error) {
					return bench.ConsumerPerformance(ctx, self, *kafkaScript, seeds, topic, group, *messages)
				}})
			}
			fmt.Fprintf(stdout, "%-6s %-26s %12s %10s %10s %10s %9s %11s %9s\n", "round", "contender", "msgs/s", "elapsed", "join", "1st msg", "CPU/msg", "allocs/msg", "peak RSS")
			all := map[string][]bench.Result{}
			for r := 1; r <= *rounds; r++ {
				// Rotate who goes first, and reverse the order every other
				// round, so no one always finds the cluster in the state the
				// same other left it in.
				got := map[string]bench.Result{}
				for i := range contenders {
					k := (i + r - 1) % len(contenders)
					if r%2 == 0 {
						k = (len(contenders) - 1 - i + r - 1) % len(contenders)
					}
					c := contenders[k]
					res, err := c.run(ferrytest.UniqueName(c.name))
					if err != nil {
						return err
					}
					report(stdout, r, res)
					got[c.name] = res
					all[c.name] = append(all[c.name], res)
				}
				fer, ok := got["ferry"]
				if !ok {
					continue
				}
				for _, c := range contenders {
					if c.name != "ferry" {
						fmt.Fprintf(stdout, "%-6d %-26s %12.3f\n", r, "ratio ferry/"+c.name, fer.Rate()/got[c.name].Rate())
					}
				}
			}
			fmt.Fprintln(stdout)
			summarize(stdout, &t, all, inProcess)
			return nil
		}),
	}
}

// summarize prints each contender's medians and checks ferry's targets
// against the raw loop: throughput ≥ 0.97×, peak RSS ≤ 1.3× (measured
// only with each contender in a process of its own), and a first message
// no later than the raw loop's plus 100 ms.
func summarize(w io.Writer, t *targets, all map[string][]bench.Result, inProcess bool) {
	names := slices.Sorted(maps.Keys(all))
	for _, name := range names {
		rs := all[name]
		rate := stat(rs, func(r bench.Result) float64 { return r.Rate() })
		join := stat(rs, func(r bench.Result) float64 { return r.First.Seconds() * 1000 })
		first := stat(rs, func(r bench.Result) float64 { return r.FirstMessage.Seconds() * 1000 })
		rss := stat(rs, func(r bench.Result) float64 { return float64(r.PeakRSS) / (1 << 20) })
		cpu := stat(rs, func(r bench.Result) float64 { return float64(r.CPUPerMsg()) })
		firstMsg := "-"
		if first > 0 {
			firstMsg = fmt.Sprintf("%.0f ms", first)
		}
		fmt.Fprintf(w, "%-26s median %9.0f msgs/s, CPU/msg %5.0f ns, join %4.0f ms, first message %s, peak RSS %4.0f MiB\n", rs[0].Name, rate, cpu, join, firstMsg, rss)
	}
	fer, raw := all["ferry"], all["raw"]
	if len(fer) == 0 || len(fer) != len(raw) {
		return
	}
	ratios := func(f func(bench.Result) float64) []float64 {
		var out []float64
		for i := range fer {
			out = append(out, f(fer[i])/f(raw[i]))
		}
		return out
	}
	t.atLeast(w, "ratio ferry/raw msgs/s", ratios(func(r bench.Result) float64 { return r.Rate() }), 0.97)
	// What reporting costs: msgs/s swings with the machine's load; CPU
	// per message hardly does.
	for _, x := range []struct{ name, what string }{{"events", "an event subscriber"}, {"prometheus", "Prometheus metrics"}} {
		obs := all[x.name]
		if len(obs) != len(fer) {
			continue
		}
		var rate, cpu []float64
		for i := range fer {
			rate = append(rate, obs[i].Rate()/fer[i].Rate())
			cpu = append(cpu, float64(obs[i].CPUPerMsg())/float64(fer[i].CPUPerMsg()))
		}
		t.atLeast(w, "msgs/s with/without "+x.what, rate, 0)
		t.atMost(w, "CPU/msg with/without "+x.what, cpu, 1.03)
	}
	if !inProcess {
		t.atMost(w, "ratio ferry/raw peak RSS", ratios(func(r bench.Result) float64 { return float64(r.PeakRSS) }), 1.3)
	}
	var late []float64
	for i := range fer {
		late = append(late, (fer[i].FirstMessage-raw[i].FirstMessage).Seconds()*1000)
	}
	t.atMost(w, "first message ferry − raw (ms)", late, 100)
}

// stat is the median of f over results.
func stat(rs []bench.Result, f func(bench.Result) float64) float64 {
	var v []float64
	for _, r := range rs {
		v = append(v, f(r))
	}
	slices.Sort(v)
	return median(v)
}

// ferryEvents is ferry with an event subscriber that counts every event:
// what reporting costs.
func ferryEvents(ctx context.Context, seeds []string, topic, group string, n int, c bench.Contender) (bench.Result, error) {
	return bench.FerryWith(ctx, "ferry + event subscriber", seeds, topic, group, n, []ferry.Option{ferry.OnEvent(bench.CountEvents())}, c)
}

// ferryPrometheus is ferry with the Prometheus metrics of ferryprom.
func ferryPrometheus(ctx context.Context, seeds []string, topic, group string, n int, c bench.Contender) (bench.Result, error) {
	metrics, err := ferryprom.New(prometheus.NewRegistry())
	if err != nil {
		return bench.Result{}, err
	}
	return bench.FerryWith(ctx, "ferry + Prometheus", seeds, topic, group, n, []ferry.Option{ferry.OnEvent(metrics.Observe)}, c)
}

// runContender consumes the topic with one contender in this process and
// prints its result as JSON, for bench.Child.
func runContender(ctx context.Context, stdout io.Writer, name string, seeds []string, topic, group string, n int, how bench.Contender) error {
	run := map[string]func(context.Context, []string, string, string, int, bench.Contender) (bench.Result, error){
		"raw": bench.Raw, "ferry": bench.Ferry, "events": ferryEvents, "prometheus": ferryPrometheus}[name]
	if run == nil {
		return fmt.Errorf("unknown contender %q: want raw, ferry, events or prometheus", name)
	}
	res, err := run(ctx, seeds, topic, group, n, how)
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(res)
}

// buildPeers builds the peers module (sarama, kafka-go, confluent-kafka-go
// consumers) into a temporary directory.
func buildPeers(ctx context.Context, dir string) (string, error) {
	tmp, err := os.MkdirTemp("", "ferry-peers")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(tmp, "peers")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("building the peers in %s (run ferry bench from the repository's root, or set -peers-dir): %v\n%s", dir, err, out)
	}
	return bin, nil
}

func report(w io.Writer, round int, res bench.Result) {
	rss := "-"
	if res.PeakRSS > 0 {
		rss = fmt.Sprintf("%.0f MiB", float64(res.PeakRSS)/(1<<20))
	}
	allocs := "-"
	if res.Mallocs > 0 {
		allocs = fmt.Sprintf("%.3f", res.AllocsPerMsg())
	}
	first := "-"
	if res.FirstMessage > 0 {
		first = res.FirstMessage.Round(time.Millisecond).String()
	}
	cpu := "-"
	if res.CPU > 0 {
		cpu = res.CPUPerMsg().String()
	}
	fmt.Fprintf(w, "%-6d %-26s %12.0f %10s %10s %10s %9s %11s %9s\n", round, res.Name, res.Rate(), res.Elapsed.Round(time.Millisecond),
		res.First.Round(time.Millisecond), first, cpu, allocs, rss)
}

// childCluster starts `ferry cluster` as a child process, so the broker's
// work and allocations are not counted against the consumers measured here.
func childCluster(ctx context.Context, stderr io.Writer) (addr string, stop func(), err error) {
	self, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(self, "cluster")
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop = func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
		}
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		stop()
		return "", nil, fmt.Errorf("embedded cluster did not start: %w", err)
	}
	return strings.TrimSpace(line), stop, ctx.Err()
}

// benchPipeline compares consume→produce at-least-once with exactly-once at
// several transaction spans, rotating the order within each round. The
// target: exactly-once at its default span at least as fast as
// at-least-once (median ratio ≥ 1.0).
func benchPipeline(ctx context.Context, stdout io.Writer, seeds []string, topic string, partitions int32, n, rounds int, sizes, kafkaScript string, t *targets) error {
	var spans []bench.Span
	for _, s := range strings.Split(sizes, ",") {
		span, err := bench.ParseSpan(strings.TrimSpace(s))
		if err != nil {
			return err
		}
		spans = append(spans, span)
	}
	fmt.Fprintf(stdout, "%-6s %-30s %12s %10s %10s %11s %9s\n", "round", "contender", "msgs/s", "elapsed", "join", "allocs/msg", "CPU/msg")
	ratios := map[bench.Span][]float64{}
	contenders := append([]bench.Span{{}}, spans...) // the zero span: at-least-once
	for r := 1; r <= rounds; r++ {
		results := map[bench.Span]bench.Result{}
		for i := range contenders {
			span := contenders[(i+r-1)%len(contenders)]
			group := "alo"
			if span != (bench.Span{}) {
				group = "eos"
			}
			res, err := bench.Pipeline(ctx, seeds, topic, ferrytest.UniqueName(group), partitions, n, span)
			if err != nil {
				return err
			}
			reportWide(stdout, r, res)
			results[span] = res
		}
		alo := results[bench.Span{}]
		for _, span := range spans {
			ratio := results[span].Rate() / alo.Rate()
			ratios[span] = append(ratios[span], ratio)
			fmt.Fprintf(stdout, "%-6d %-30s %12.3f\n", r, "ratio "+span.String()+"/ALO", ratio)
		}
	}
	if kafkaScript != "" {
		// Kafka's EOS copier, once, with transactions of the largest
		// count given (16 batches of 100 per partition by default).
		k := 16
		for _, span := range spans {
			if span.Batches > 0 {
				k = span.Batches
			}
		}
		size := k * 100 * int(partitions)
		out := ferrytest.UniqueName("copier")
		if err := bench.CreateTopic(ctx, seeds, out, partitions); err != nil {
			return err
		}
		res, err := bench.TransactionalMessageCopier(ctx, kafkaScript, seeds, topic, out, ferrytest.UniqueName("copier"), size)
		if err != nil {
			return err
		}
		reportWide(stdout, 0, res)
	}
	fmt.Fprintln(stdout)
	for _, span := range spans {
		name := "ratio " + span.String() + "/ALO"
		if span.Default {
			t.atLeast(stdout, name, ratios[span], 1.0)
		} else {
			t.atLeast(stdout, name, ratios[span], 0)
		}
	}
	return nil
}

// targets collects the figures a run promises; with -check a missed one
// makes the run fail.
type targets struct {
	missed []string
}

// atLeast prints the median and range of values and, when want > 0, checks
// the median against it.
func (t *targets) atLeast(w io.Writer, name string, values []float64, want float64) {
	if len(values) == 0 {
		return
	}
	values = slices.Sorted(slices.Values(values))
	med := median(values)
	line := fmt.Sprintf("median %s: %.3f (%.3f–%.3f over %d rounds)", name, med, values[0], values[len(values)-1], len(values))
	if want > 0 {
		verdict := "met"
		if med < want {
			verdict = "MISSED"
			t.missed = append(t.missed, fmt.Sprintf("%s %.3f < %.3g", name, med, want))
		}
		line += fmt.Sprintf(" target ≥ %.3g: %s", want, verdict)
	}
	fmt.Fprintln(w, line)
}

// atMost is atLeast for figures that must stay below a bound.
func (t *targets) atMost(w io.Writer, name string, values []float64, want float64) {
	if len(values) == 0 {
		return
	}
	values = slices.Sorted(slices.Values(values))
	med := median(values)
	verdict := "met"
	if med > want {
		verdict = "MISSED"
		t.missed = append(t.missed, fmt.Sprintf("%s %.3f > %.3g", name, med, want))
	}
	fmt.Fprintf(w, "median %s: %.3f (%.3f–%.3f over %d rounds) target ≤ %.3g: %s\n", name, med, values[0], values[len(values)-1], len(values), want, verdict)
}

// err reports the missed targets.
func (t *targets) err() error {
	if len(t.missed) == 0 {
		return nil
	}
	return fmt.Errorf("targets missed: %s", strings.Join(t.missed, "; "))
}

// median of sorted values (the mean of the middle two for an even count).
func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

func reportWide(w io.Writer, round int, res bench.Result) {
	fmt.Fprintf(w, "%-6d %-30s %12.0f %10s %10s %11.3f %9s\n", round, res.Name, res.Rate(), res.Elapsed.Round(time.Millisecond), res.First.Round(time.Millisecond), res.AllocsPerMsg(), res.CPUPerMsg())
}

// benchSlow runs the slow-handler cases: one partition, a handler that waits
// on every message, each contender on a fresh group of one topic per case.
// Times run from the partition's assignment to the last message processed.
// Targets: with 10,000 keys the parallel mode at least 80× faster than
// sequential; with a heavy tail at least 5× faster than the per-batch
// fan-out; with one key within 5 % of sequential.
//
// With a Parallel Consumer script, it runs too, and with 10,000 keys the
// parallel mode must be at least 4× faster than it.
func benchSlow(ctx context.Context, stdout io.Writer, seeds []string, where string, n, inFlight, rounds int, pcScript string, t *targets) error {
	fmt.Fprintf(stdout, "ferry bench -slow: %d messages per case, one partition, %s\n", n, where)
	fmt.Fprintf(stdout, "machine: %s/%s, %d CPUs, %s\n\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())
	topics := make([]string, len(bench.SlowCases))
	for i, c := range bench.SlowCases {
		topics[i] = ferrytest.UniqueName("slow")
		if err := bench.ProduceKeyed(ctx, seeds, topics[i], n, c.Keys); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "%-6s %-30s %-24s %10s %10s %9s\n", "round", "case", "contender", "seconds", "msgs/s", "speed-up")
	var manyKeys, tail, oneKey, overPC []float64
	for r := 1; r <= rounds; r++ {
		for i, c := range bench.SlowCases {
			contenders := []func() (bench.Result, error){
				func() (bench.Result, error) {
					return bench.SlowSequential(ctx, seeds, topics[i], ferrytest.UniqueName("seq"), n, c)
				},
				func() (bench.Result, error) {
					return bench.SlowParallel(ctx, seeds, topics[i], ferrytest.UniqueName("par"), n, inFlight, c)
				},
				func() (bench.Result, error) {
					return bench.SlowFanOut(ctx, seeds, topics[i], ferrytest.UniqueName("fan"), n, c)
				},
			}
			if pcScript != "" {
				contenders = append(contenders, func() (bench.Result, error) {
					return bench.SlowParallelConsumer(ctx, pcScript, seeds, topics[i], ferrytest.UniqueName("pc"), n, inFlight, c)
				})
			}
			took := make([]float64, len(contenders))
			for k, run := range contenders {
				res, err := run()
				if err != nil {
					return err
				}
				took[k] = (res.Elapsed - res.First).Seconds()
				fmt.Fprintf(stdout, "%-6d %-30s %-24s %10.3f %10.0f %8.1f×\n", r, c.Name, res.Name, took[k], res.Rate(), took[0]/took[k])
				runtime.GC()
			}
			seq, par, fan := took[0], took[1], took[2]
			switch {
			case c.Tail:
				tail = append(tail, fan/par)
			case c.Keys == 1:
				oneKey = append(oneKey, seq/par)
			case c.Keys >= n:
				manyKeys = append(manyKeys, seq/par)
				if pcScript != "" {
					overPC = append(overPC, took[3]/par)
				}
			}
		}
	}
	fmt.Fprintln(stdout)
	t.atLeast(stdout, "speed-up parallel/sequential, 10,000 keys", manyKeys, 80)
	t.atLeast(stdout, "speed-up parallel/fan-out, heavy tail", tail, 5)
	t.atLeast(stdout, "speed parallel/sequential, one key", oneKey, 0.95)
	t.atLeast(stdout, "speed-up parallel/Parallel Consumer, 10,000 keys", overPC, 4)
	return nil
}
