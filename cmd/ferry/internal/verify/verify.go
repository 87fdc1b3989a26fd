// Package verify measures delivery guarantees under real crashes: it runs a
// fleet of worker processes over a topic of uniquely numbered messages,
// SIGKILLs and restarts them at random moments, forces rebalances, then
// counts per message how often it was processed. It backs `ferry verify` and
// `ferry demo`.
package verify

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Mode is a delivery mode under test.
type Mode int

// The delivery modes of a Kafka consumer, in the order of the loss/duplicate
// table: when the offset is committed relative to processing.
const (
	AtMostOnce Mode = iota
	AtLeastOnce
	ExactlyOnce
	// ParallelAtLeastOnce is at-least-once with ferry.Parallel: messages
	// of a partition run concurrently, one key at a time, and the run also
	// checks that each key's messages were first processed in offset order.
	ParallelAtLeastOnce
	// ExactlyOnceDB inserts one row per input into PostgreSQL in the
	// transaction that also stores the partition's offset (package
	// ferrypg); it needs Config.Postgres.
	ExactlyOnceDB
)

// Modes lists every mode in table order.
var Modes = []Mode{AtMostOnce, AtLeastOnce, ExactlyOnce, ParallelAtLeastOnce, ExactlyOnceDB}

func (m Mode) String() string {
	return [...]string{"at-most-once", "at-least-once", "exactly-once", "at-least-once-parallel", "exactly-once-db"}[m]
}

// Short is the mode's flag name.
func (m Mode) Short() string { return [...]string{"amo", "alo", "eos", "alo-par", "eos-db"}[m] }

// commitTiming is the table's "offset commit timing" column.
func (m Mode) commitTiming() string {
	return [...]string{"before processing", "after processing", "with the output, in one transaction",
		"after processing, out of order", "with the rows, in one DB transaction"}[m]
}

// logsProcessing reports whether the mode's workers record processings in
// their logs (the others produce outputs or insert rows).
func (m Mode) logsProcessing() bool { return m != ExactlyOnce && m != ExactlyOnceDB }

// ParseMode accepts amo, alo, eos, alo-par, eos-db or the long names.
func ParseMode(s string) (Mode, error) {
	for _, m := range Modes {
		if s == m.Short() || s == m.String() {
			return m, nil
		}
	}
	return 0, fmt.Errorf("unknown mode %q (amo, alo, eos, alo-par, eos-db)", s)
}

// Config describes a verify run.
type Config struct {
	Brokers    []string
	ClientOpts []kgo.Opt // how the run's own clients reach the brokers: TLS, SASL
	Env        []string  // added to the workers' environment ("KEY=value"): FERRY_TLS*, FERRY_SASL*
	Modes      []Mode
	Messages   int   // messages per mode
	Partitions int32 // partitions of the input topic
	Workers    int   // worker processes
	Kills      int   // SIGKILLs per mode
	// Broker, if set, is a broker the run controls; BrokerFaults faults
	// of kind BrokerFault are injected into it per mode, among the kills
	// (a BrokerStop lasts StopFor).
	Broker       *Broker
	BrokerFaults int
	BrokerFault  BrokerFault
	StopFor      time.Duration
	Every        time.Duration // mean time between chaos events
	Rebalance    bool          // also add and remove workers
	Work         time.Duration // simulated work per batch in the workers
	Deadline     time.Duration // per mode; the run stops by itself
	Binary       string        // the ferry binary (runs `ferry worker`)
	Dir          string        // worker logs; a temp dir when empty
	Progress     io.Writer     // a progress line while it runs; nil for none
	// Redraw draws the progress line in place ('\r'), for a terminal;
	// otherwise (a log file, a pipe) it is a plain line every 10 seconds.
	Redraw bool
	Seed   uint64
	// Postgres is the PostgreSQL URL the eos-db mode writes to.
	Postgres string
	// Freeze, if positive, makes every fourth chaos event of the eos-db
	// mode a SIGSTOP of a worker for that long (past the workers' 10 s
	// session timeout, a zombie), then a SIGCONT.
	Freeze time.Duration
}

// clientOpts returns the options of a client of the run's cluster.
func (cfg Config) clientOpts() []kgo.Opt {
	return append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...)}, cfg.ClientOpts...)
}

// Result is one mode's measured outcome.
type Result struct {
	Mode       string `json:"mode"`
	Commit     string `json:"commit_timing"`
	Messages   int    `json:"messages"`
	Kills      int    `json:"kills"`
	Freezes    int    `json:"freezes,omitempty"`
	Rebalances int    `json:"rebalances"`
	// BrokerFaults counts the broker faults injected.
	BrokerFaults int `json:"broker_faults"`
	// WorkerExits counts workers that exited with an error — by
	// themselves, or on a graceful stop — and WorkerErrors says why.
	WorkerExits  int      `json:"worker_exits"`
	WorkerErrors []string `json:"worker_errors,omitempty"`
	// LongestStall is the longest time, in seconds, the group's committed
	// position stood still while input was left to commit.
	LongestStall float64 `json:"longest_stall_seconds"`
	Processed    int     `json:"processed_distinct"`
	Lost         int     `json:"lost"`
	Duplicated   int     `json:"duplicated"`
	// OutOfOrder counts keys whose messages were first processed out of
	// offset order (parallel mode).
	OutOfOrder  int     `json:"keys_out_of_order,omitempty"`
	Seconds     float64 `json:"seconds"`
	PerSecond   float64 `json:"messages_per_second"`
	Expectation string  `json:"expectation"`
	OK          bool    `json:"ok"`
}

// Report is a whole run.
type Report struct {
	Brokers    []string `json:"brokers"`
	Partitions int32    `json:"partitions"`
	Workers    int      `json:"workers"`
	Results    []Result `json:"results"`
}

// OK reports whether every mode kept its guarantee.
func (r Report) OK() bool {
	for _, res := range r.Results {
		if !res.OK {
			return false
		}
	}
	return true
}

// Validate reports every configuration value that makes no sense, naming
// the command-line flag that sets it.
func (cfg Config) Validate() error {
	var errs []error
	atLeast := func(flag string, v, min int) {
		if v < min {
			errs = append(errs, fmt.Errorf("-%s %d: must be at least %d", flag, v, min))
		}
	}
	atLeast("messages", cfg.Messages, 1)
	atLeast("partitions", int(cfg.Partitions), 1)
	atLeast("workers", cfg.Workers, 1)
	atLeast("kills", cfg.Kills, 0)
	atLeast("broker-faults", cfg.BrokerFaults, 0)
	if cfg.BrokerFaults > 0 && cfg.Broker == nil {
		errs = append(errs, errors.New("-broker-faults: needs a broker the run controls (-kafka)"))
	}
	if cfg.BrokerFaults > 0 && cfg.BrokerFault == BrokerStop && cfg.StopFor <= 0 {
		errs = append(errs, fmt.Errorf("-broker-stop %s: must be positive", cfg.StopFor))
	}
	if cfg.Every <= 0 {
		errs = append(errs, fmt.Errorf("-every %s: must be positive", cfg.Every))
	}
	if cfg.Work < 0 {
		errs = append(errs, fmt.Errorf("-work %s: must not be negative", cfg.Work))
	}
	if cfg.Deadline <= 0 {
		errs = append(errs, fmt.Errorf("-deadline %s: must be positive", cfg.Deadline))
	}
	if len(cfg.Modes) == 0 {
		errs = append(errs, errors.New("-modes: name at least one mode (amo, alo, eos, alo-par, eos-db)"))
	}
	if slices.Contains(cfg.Modes, ExactlyOnceDB) && cfg.Postgres == "" {
		errs = append(errs, errors.New("-modes eos-db needs PostgreSQL: -postgres URL or FERRY_POSTGRES (scripts/postgres up prints one)"))
	}
	if cfg.Freeze < 0 {
		errs = append(errs, fmt.Errorf("-freeze %s: must not be negative", cfg.Freeze))
	}
	return errors.Join(errs...)
}

// Run verifies each configured mode in turn.
func Run(ctx context.Context, cfg Config) (Report, error) {
	if err := cfg.Validate(); err != nil {
		return Report{}, err
	}
	if cfg.Dir == "" {
		dir, err := os.MkdirTemp("", "ferry-verify")
		if err != nil {
			return Report{}, err
		}
		defer os.RemoveAll(dir)
		cfg.Dir = dir
	}
	if cfg.Seed == 0 {
		cfg.Seed = uint64(time.Now().UnixNano())
	}
	rep := Report{Brokers: cfg.Brokers, Partitions: cfg.Partitions, Workers: cfg.Workers}
	for _, m := range cfg.Modes {
		res, err := runMode(ctx, cfg, m)
		if err != nil {
			return rep, fmt.Errorf("%s: %w", m, err)
		}
		rep.Results = append(rep.Results, res)
	}
	return rep, nil
}

// fleet is the worker processes of one mode.
type fleet struct {
	cfg    Config
	mode   Mode
	run    string
	input  string
	output string
	group  string
	mu     sync.Mutex
	procs  map[int]*exec.Cmd
	exited map[int]chan struct{}
	status map[int]error // how each slot's last worker exited
	errors []string      // workers that exited with an error
}

func (f *fleet) logPath(slot int) string {
	return filepath.Join(f.cfg.Dir, fmt.Sprintf("%s-%s-worker%d.log", f.run, f.mode.Short(), slot))
}

func (f *fleet) start(slot int) error {
	args := []string{"worker",
		"-brokers", strings.Join(f.cfg.Brokers, ","),
		"-mode", f.mode.Short(),
		"-input", f.input, "-output", f.output, "-group", f.group,
		"-log", f.logPath(slot),
		"-instance", fmt.Sprintf("%s-%s-%d", f.run, f.mode.Short(), slot),
		"-work", f.cfg.Work.String(),
	}
	if f.mode == ExactlyOnceDB {
		args = append(args, "-postgres", f.cfg.Postgres, "-rows", f.rows())
	}
	if slot < f.cfg.Workers {
		// The fleet's own slots are static members, so a worker restarted
		// after a SIGKILL takes its partitions back at once; extra workers
		// are dynamic, so their leaving rebalances the group at once.
		args = append(args, "-static")
	}
	cmd := exec.Command(f.cfg.Binary, args...)
	if len(f.cfg.Env) > 0 {
		cmd.Env = append(os.Environ(), f.cfg.Env...)
	}
	errf, err := os.OpenFile(f.logPath(slot)+".stderr", os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd.Stderr = errf
	if err := cmd.Start(); err != nil {
		errf.Close()
		return fmt.Errorf("starting worker: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		errf.Close()
		f.mu.Lock()
		f.status[slot] = err
		f.mu.Unlock()
		close(exited)
	}()
	f.mu.Lock()
	f.procs[slot], f.exited[slot] = cmd, exited
	f.mu.Unlock()
	return nil
}

// stop ends a worker: SIGKILL when kill, else SIGTERM and a graceful drain.
func (f *fleet) stop(slot int, kill bool) {
	f.mu.Lock()
	cmd, exited := f.procs[slot], f.exited[slot]
	delete(f.procs, slot)
	f.mu.Unlock()
	if cmd == nil {
		return
	}
	if kill {
		_ = cmd.Process.Kill()
	} else {
		_ = cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-exited:
		f.mu.Lock()
		if !kill && !diedOf(f.status[slot], syscall.SIGTERM) {
			// (A worker that died of the SIGTERM itself got it before
			// it could handle it: it was just starting.)
			f.exitedWithError(slot, "on a graceful stop")
		}
		f.mu.Unlock()
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		f.mu.Lock()
		f.errors = append(f.errors, fmt.Sprintf("worker %d did not stop within 30 s of SIGTERM", slot))
		f.mu.Unlock()
	}
}

// diedOf reports whether a worker's exit was death by sig.
func diedOf(err error, sig syscall.Signal) bool {
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return false
	}
	ws, ok := exit.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// exitedWithError records the exit of a slot's worker if it failed.
func (f *fleet) exitedWithError(slot int, when string) {
	if err := f.status[slot]; err != nil {
		f.errors = append(f.errors, fmt.Sprintf("worker %d exited %s: %v: %s", slot, when, err, errTail(f.logPath(slot)+".stderr")))
	}
}

func (f *fleet) slots() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]int, 0, len(f.procs))
	for s := range f.procs {
		out = append(out, s)
	}
	return out
}

// reap finds the workers that exited by themselves (they should not), to
// restart them; each such exit is recorded.
func (f *fleet) reap() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var dead []int
	for s, ch := range f.exited {
		if _, running := f.procs[s]; !running {
			continue
		}
		select {
		case <-ch:
			dead = append(dead, s)
			delete(f.procs, s)
			if f.status[s] == nil {
				f.errors = append(f.errors, fmt.Sprintf("worker %d exited by itself with status 0", s))
			}
			f.exitedWithError(s, "by itself")
		default:
		}
	}
	return dead
}

func runMode(ctx context.Context, cfg Config, m Mode) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Deadline)
	defer cancel()
	rng := rand.New(rand.NewPCG(cfg.Seed, uint64(m)))
	run := fmt.Sprintf("v%06d", rng.IntN(1_000_000))
	f := &fleet{cfg: cfg, mode: m, run: run, procs: map[int]*exec.Cmd{}, exited: map[int]chan struct{}{}, status: map[int]error{},
		input: run + "-" + m.Short() + "-in", output: run + "-" + m.Short() + "-out", group: run + "-" + m.Short()}

	cl, err := kgo.NewClient(append(cfg.clientOpts(), kgo.ProducerLinger(5*time.Millisecond))...)
	if err != nil {
		return Result{}, err
	}
	defer cl.Close()
	var db *rowsDB
	if m == ExactlyOnceDB {
		if db, err = openRows(ctx, cfg.Postgres, f.rows()); err != nil {
			return Result{}, err
		}
		defer db.close()
	}
	adm := kadm.NewClient(cl)
	for _, t := range []string{f.input, f.output} {
		if resp, err := adm.CreateTopic(ctx, cfg.Partitions, 1, nil, t); err != nil || resp.Err != nil {
			return Result{}, fmt.Errorf("creating %s: %v %v", t, err, resp.Err)
		}
	}

	// The messages are produced while the chaos runs, a slice before each
	// kill, so every kill lands while there is work in flight.
	sent := 0
	produceUpTo := func(upto int) error {
		if upto <= sent {
			return nil
		}
		err := produceSequence(ctx, cl, f.input, sent, upto, m == ParallelAtLeastOnce)
		sent = upto
		return err
	}
	began := time.Now()
	watch := watchStalls(adm, f.group, f.input, 200*time.Millisecond)
	defer watch.Stop()
	for s := range cfg.Workers {
		if err := f.start(s); err != nil {
			return Result{}, err
		}
	}
	defer func() {
		for _, s := range f.slots() {
			f.stop(s, true)
		}
	}()
	var ends kadm.ListedOffsets
	faults := 0
	if cfg.Broker != nil {
		faults = cfg.BrokerFaults
	}
	res := Result{Mode: m.String(), Commit: m.commitTiming(), Messages: cfg.Messages}
	var lastLine time.Time
	progress := func(phase string) {
		if cfg.Progress == nil || !cfg.Redraw && phase != "done" && time.Since(lastLine) < 10*time.Second {
			return
		}
		lastLine = time.Now()
		done := committedShare(ctx, adm, f.group, f.input, cfg.Messages)
		if !cfg.Redraw {
			fmt.Fprintf(cfg.Progress, "%s: %.0f%% committed, kills %d/%d, broker faults %d/%d, rebalances %d, %s, %s\n",
				m, done*100, res.Kills, cfg.Kills, res.BrokerFaults, faults, res.Rebalances, time.Since(began).Round(time.Second), phase)
			return
		}
		bar := strings.Repeat("█", int(done*20)) + strings.Repeat("░", 20-int(done*20))
		fmt.Fprintf(cfg.Progress, "\r%-14s %s %3.0f%%  kills %d/%d  broker faults %d/%d  rebalances %d  %s  %-14s",
			m, bar, done*100, res.Kills, cfg.Kills, res.BrokerFaults, faults, res.Rebalances, time.Since(began).Round(time.Second), phase)
	}

	// Chaos: SIGKILL a random worker at a random moment and restart it in
	// its slot, or hit the broker when a broker fault is due; now and then
	// add a worker, or drain one away (rebalances).
	extra := cfg.Workers
	events := 0
	strikes := cfg.Kills + faults
	for res.Kills+res.BrokerFaults < strikes {
		// Until the next event, produce this strike's slice of messages
		// in small steps, so the workers are busy whenever it strikes.
		strike := res.Kills + res.BrokerFaults
		wait := time.Duration(float64(cfg.Every) * (0.3 + 1.4*rng.Float64()))
		from, to := sent, cfg.Messages*(strike+1)/strikes
		const steps = 8
		for i := 1; i <= steps; i++ {
			if err := produceUpTo(from + (to-from)*i/steps); err != nil {
				return res, fmt.Errorf("producing: %w", err)
			}
			select {
			case <-ctx.Done():
				return res, fmt.Errorf("deadline passed after %d kills and %d broker faults", res.Kills, res.BrokerFaults)
			case <-time.After(wait / steps):
			}
		}
		for _, s := range f.reap() {
			if err := f.start(s); err != nil {
				return res, err
			}
		}
		slots := f.slots()
		events++
		switch {
		case m == ExactlyOnceDB && cfg.Freeze > 0 && events%4 == 2:
			// A member frozen past its session timeout (a zombie): the
			// group moves its partitions; when it wakes, its transaction
			// in flight must not commit.
			s := rng.IntN(cfg.Workers)
			if err := f.freeze(ctx, s, cfg.Freeze); err != nil {
				return res, err
			}
			res.Freezes++
		case cfg.Rebalance && events%3 == 0 && len(slots) <= cfg.Workers:
			if err := f.start(extra); err != nil { // a member joins
				return res, err
			}
			extra++
			res.Rebalances++
		case cfg.Rebalance && events%3 == 0:
			for _, s := range slots { // a member leaves gracefully
				if s >= cfg.Workers {
					f.stop(s, false)
					res.Rebalances++
					break
				}
			}
		case faultDue(strike, strikes, faults):
			progress("broker " + cfg.BrokerFault.String())
			if err := cfg.Broker.inject(ctx, cfg.BrokerFault, cfg.StopFor); err != nil {
				return res, fmt.Errorf("broker fault (%s): %w", cfg.BrokerFault, err)
			}
			res.BrokerFaults++
		default:
			// Kill one of the fleet's own (static) workers: a killed
			// dynamic member would stall its partitions for a whole
			// session timeout.
			s := rng.IntN(cfg.Workers)
			f.stop(s, true)
			res.Kills++
			time.Sleep(time.Duration(rng.IntN(200)) * time.Millisecond)
			if err := f.start(s); err != nil {
				return res, err
			}
		}
		progress("chaos")
	}

	if err := produceUpTo(cfg.Messages); err != nil {
		return res, fmt.Errorf("producing: %w", err)
	}
	if ends, err = adm.ListEndOffsets(ctx, f.input); err != nil {
		return res, err
	}
	// Drain: every partition's committed offset reaches its end.
	for committedFraction(ctx, adm, f.group, f.input, ends) < 1 {
		for _, s := range f.reap() {
			if err := f.start(s); err != nil {
				return res, err
			}
		}
		select {
		case <-ctx.Done():
			return res, fmt.Errorf("did not drain before the deadline")
		case <-time.After(200 * time.Millisecond):
		}
		progress("draining")
	}
	elapsed := time.Since(began)
	res.LongestStall = watch.Stop().Seconds()
	for _, s := range f.slots() {
		f.stop(s, false)
	}
	f.mu.Lock()
	res.WorkerExits, res.WorkerErrors = len(f.errors), f.errors
	f.mu.Unlock()
	progress("done")
	if cfg.Progress != nil && cfg.Redraw {
		fmt.Fprintln(cfg.Progress)
	}

	counts := make([]int, cfg.Messages)
	firsts := make([]int64, cfg.Messages)
	switch {
	case m == ExactlyOnceDB:
		err = db.count(ctx, counts)
	case m.logsProcessing():
		err = countLogs(f, extra, counts, firsts)
	default:
		err = countOutputs(ctx, cfg, f.output, counts)
	}
	if err != nil {
		return res, err
	}
	if m == ParallelAtLeastOnce {
		res.OutOfOrder = keysOutOfOrder(firsts, counts)
	}
	for _, n := range counts {
		switch {
		case n == 0:
			res.Lost++
		default:
			res.Processed++
			res.Duplicated += n - 1
		}
	}
	res.Seconds = elapsed.Seconds()
	res.PerSecond = float64(cfg.Messages) / elapsed.Seconds()
	switch m {
	case AtMostOnce:
		res.Expectation, res.OK = "may lose, never duplicates", res.Duplicated == 0
	case AtLeastOnce:
		res.Expectation, res.OK = "never loses, may duplicate", res.Lost == 0
	case ExactlyOnce, ExactlyOnceDB:
		res.Expectation, res.OK = "never loses, never duplicates", res.Lost == 0 && res.Duplicated == 0
	case ParallelAtLeastOnce:
		res.Expectation, res.OK = "never loses, keeps each key's order", res.Lost == 0 && res.OutOfOrder == 0
	}
	return res, nil
}

// produceSequence writes values from..to-1, spread over partitions by the
// default partitioner. The key is the value, or with sharedKeys the value
// modulo parallelKeys, so that keys repeat and their order matters.
func produceSequence(ctx context.Context, cl *kgo.Client, topic string, from, to int, sharedKeys bool) error {
	recs := make([]*kgo.Record, 0, to-from)
	for i := from; i < to; i++ {
		v := []byte(strconv.Itoa(i))
		k := v
		if sharedKeys {
			k = []byte(strconv.Itoa(i % parallelKeys))
		}
		recs = append(recs, &kgo.Record{Topic: topic, Key: k, Value: v})
	}
	return cl.ProduceSync(ctx, recs...).FirstErr()
}

// parallelKeys is how many distinct keys the parallel mode's messages have.
const parallelKeys = 64

// keysOutOfOrder counts the keys whose messages were not first processed in
// the order they were produced (which, within a key, is offset order: one
// key, one partition). firsts holds each message's first processing time;
// messages never processed are left out.
func keysOutOfOrder(firsts []int64, counts []int) int {
	last := make([]int64, parallelKeys)
	bad := make([]bool, parallelKeys)
	for id, at := range firsts {
		if counts[id] == 0 {
			continue
		}
		k := id % parallelKeys
		if at <= last[k] {
			bad[k] = true
		}
		last[k] = at
	}
	n := 0
	for _, b := range bad {
		if b {
			n++
		}
	}
	return n
}

// committedFraction is the share of the input the group has committed.
func committedFraction(ctx context.Context, adm *kadm.Client, group, topic string, ends kadm.ListedOffsets) float64 {
	resp, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return 0
	}
	var total, done int64
	ends.Each(func(e kadm.ListedOffset) {
		total += e.Offset
		if o, ok := resp.Lookup(topic, e.Partition); ok && o.At > 0 {
			done += min(o.At, e.Offset)
		}
	})
	if total == 0 {
		return 1
	}
	return float64(done) / float64(total)
}

// committedShare is the share of n messages the group has committed so far.
func committedShare(ctx context.Context, adm *kadm.Client, group, topic string, n int) float64 {
	resp, err := adm.FetchOffsets(ctx, group)
	if err != nil || n == 0 {
		return 0
	}
	var done int64
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.At > 0 {
			done += o.At
		}
	})
	return min(1, float64(done)/float64(n))
}

// countLogs counts, per message, the lines of every worker log; a torn last
// line (a kill mid-write) does not count. A line is "id", or "id time" where
// time (Unix nanoseconds) is when it was processed: firsts learns each
// message's earliest.
func countLogs(f *fleet, slots int, counts []int, firsts []int64) error {
	for s := range slots {
		file, err := os.Open(f.logPath(s))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		r := bufio.NewReader(file)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				break // EOF, possibly after a torn line
			}
			idText, atText, timed := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
			id, perr := strconv.Atoi(idText)
			var at int64
			if timed && perr == nil {
				at, perr = strconv.ParseInt(atText, 10, 64)
			}
			if perr != nil || id < 0 || id >= len(counts) {
				file.Close()
				return fmt.Errorf("corrupt line %q in %s", line, f.logPath(s))
			}
			if counts[id] == 0 || at < firsts[id] {
				firsts[id] = at
			}
			counts[id]++
		}
		file.Close()
	}
	return nil
}

// countOutputs counts, per message, its committed outputs (read_committed).
func countOutputs(ctx context.Context, cfg Config, topic string, counts []int) error {
	cl, err := kgo.NewClient(append(cfg.clientOpts(), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		n := 0
		var bad error
		fs.EachRecord(func(r *kgo.Record) {
			n++
			id, err := strconv.Atoi(string(r.Key))
			if err != nil || id < 0 || id >= len(counts) {
				bad = fmt.Errorf("corrupt output key %q", r.Key)
				return
			}
			counts[id]++
		})
		if bad != nil {
			return bad
		}
		if n == 0 {
			return ctx.Err()
		}
	}
}

// PrintTable prints the loss/duplicate table of the processing architectures
// with the measured counts.
func PrintTable(w io.Writer, rep Report) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "mode\toffset commit timing\tmessages\tkills\tbroker\trebalances\tlost\tduplicated\texits\tstall\tmsgs/s\tguarantee")
	for _, r := range rep.Results {
		verdict := "✓ " + r.Expectation
		if !r.OK {
			verdict = "✗ VIOLATED: " + r.Expectation
		}
		if r.OutOfOrder > 0 {
			verdict += fmt.Sprintf(" (%d keys out of order)", r.OutOfOrder)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.1fs\t%.0f\t%s\n",
			r.Mode, r.Commit, r.Messages, r.Kills, r.BrokerFaults, r.Rebalances, r.Lost, r.Duplicated, r.WorkerExits,
			r.LongestStall, r.PerSecond, verdict)
	}
	tw.Flush()
	for _, r := range rep.Results {
		for _, e := range r.WorkerErrors {
			fmt.Fprintf(w, "%s: %s\n", r.Mode, e)
		}
	}
	for _, r := range rep.Results {
		if r.Freezes > 0 {
			fmt.Fprintf(w, "%s: also %d workers frozen (SIGSTOP) past their session timeout, then resumed\n", r.Mode, r.Freezes)
		}
	}
}
