package verify

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// BrokerFault is a fault the verifier injects into a broker it controls.
type BrokerFault int

// The broker faults.
const (
	// BrokerRestart SIGKILLs the broker (no clean shutdown, no final
	// flush) and starts it again on the same data and ports.
	BrokerRestart BrokerFault = iota
	// BrokerStop freezes the broker with SIGSTOP for a while, then lets
	// it go on with SIGCONT: its clients see a broker that accepts
	// connections and never answers.
	BrokerStop
)

func (f BrokerFault) String() string { return [...]string{"restart", "stop"}[f] }

// ParseBrokerFault accepts restart or stop.
func ParseBrokerFault(s string) (BrokerFault, error) {
	for _, f := range []BrokerFault{BrokerRestart, BrokerStop} {
		if s == f.String() {
			return f, nil
		}
	}
	return 0, fmt.Errorf("unknown broker fault %q (restart, stop)", s)
}

// Broker is a broker the verifier may kill, restart and freeze: the one
// scripts/kafka runs in Dir.
type Broker struct {
	Script string // scripts/kafka
	Dir    string // the broker's FERRY_KAFKA_DIR
}

// Addr is the address the broker listens on, from its run dir.
func (b *Broker) Addr() (string, error) {
	port, err := os.ReadFile(filepath.Join(b.Dir, "port"))
	if err != nil {
		return "", fmt.Errorf("no broker run by scripts/kafka in %s: %w", b.Dir, err)
	}
	return "127.0.0.1:" + strings.TrimSpace(string(port)), nil
}

// pid is the running broker's process id; it checks the process is the
// broker of b.Dir, so a reused pid is never signalled.
func (b *Broker) pid() (int, error) {
	raw, err := os.ReadFile(filepath.Join(b.Dir, "pid"))
	if err != nil {
		return 0, fmt.Errorf("the broker in %s is not running: %w", b.Dir, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		return 0, fmt.Errorf("pid file of %s: %w", b.Dir, err)
	}
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if !strings.Contains(string(cmdline), "kafka.Kafka") || !strings.Contains(string(cmdline), b.Dir) {
		return 0, fmt.Errorf("the broker in %s is not running (pid %d is not it)", b.Dir, pid)
	}
	return pid, nil
}

// inject applies one fault and returns once the broker serves again.
func (b *Broker) inject(ctx context.Context, f BrokerFault, stopFor time.Duration) error {
	pid, err := b.pid()
	if err != nil {
		return err
	}
	switch f {
	case BrokerStop:
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
		case <-time.After(stopFor):
		}
		return syscall.Kill(pid, syscall.SIGCONT)
	default:
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			return err
		}
		for alive(pid) {
			time.Sleep(50 * time.Millisecond)
		}
		cmd := exec.CommandContext(ctx, b.Script, "restart")
		cmd.Env = append(os.Environ(), "FERRY_KAFKA_DIR="+b.Dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s restart: %w\n%s", b.Script, err, out)
		}
		return nil
	}
}

// alive reports whether pid runs (a zombie nobody reaped does not).
func alive(pid int) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && len(cmdline) > 0
}

// faultDue reports whether chaos strike i (0-based, of total) is one of the
// faults broker faults, spread evenly: the middle of each of faults equal
// stretches.
func faultDue(i, total, faults int) bool {
	for j := range faults {
		if (2*j+1)*total/(2*faults) == i {
			return true
		}
	}
	return false
}

// stallWatch samples a group's committed position and keeps the longest
// time it stood still while input was left to commit: a consumer stalled by
// a crash, a rebalance, a broker fault. Samples that fail (the broker is
// down) count as standing still.
type stallWatch struct {
	longest time.Duration
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

func watchStalls(adm *kadm.Client, group, topic string, every time.Duration) *stallWatch {
	w := &stallWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		var committed int64 = -1
		since := time.Now()
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(every):
			}
			c, end, err := position(adm, group, topic, every)
			now := time.Now()
			switch {
			case err == nil && (c > committed || c >= end):
				committed, since = c, now // moving, or nothing left to do
			default:
				w.longest = max(w.longest, now.Sub(since))
			}
		}
	}()
	return w
}

// Stop ends the watch and returns the longest stall seen; it may be
// called again.
func (w *stallWatch) Stop() time.Duration {
	w.once.Do(func() { close(w.stop) })
	<-w.done
	return w.longest
}

// position sums the group's committed offsets and the end offsets of topic.
func position(adm *kadm.Client, group, topic string, timeout time.Duration) (committed, end int64, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), max(timeout, time.Second))
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, 0, err
	}
	offs, err := adm.FetchOffsets(ctx, group)
	if err == nil {
		err = offs.Error()
	}
	if err != nil {
		return 0, 0, err
	}
	ends.Each(func(e kadm.ListedOffset) {
		end += e.Offset
		if o, ok := offs.Lookup(topic, e.Partition); ok && o.At > 0 {
			committed += min(o.At, e.Offset)
		}
	})
	return committed, end, nil
}

// errTail is the last line a worker wrote to its stderr, for the report.
func errTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	last := lines[len(lines)-1]
	if len(last) > 300 {
		last = last[:300] + "…"
	}
	return last
}
