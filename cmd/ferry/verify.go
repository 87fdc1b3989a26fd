package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/ferrykit/ferry/cmd/ferry/internal/verify"
	"github.com/ferrykit/ferry/ferrytest"
	"github.com/peterbourgon/ff/v3/ffcli"
)

// runVerify measures loss and duplicates per delivery mode under real
// crashes (see package verify).
func verifyCmd(stdout, stderr io.Writer) *ffcli.Command {
	fs := newFlags("verify", stderr)
	cl := addClusterFlags(fs, "cluster to use (default: an embedded cluster hosted by this process)")
	brokers, sec := cl.brokers, cl.sec
	modes := fs.String("modes", "amo,alo,eos,alo-par", "modes to verify, comma separated")
	messages := fs.Int("messages", 20000, "messages per mode")
	partitions := fs.Int("partitions", 6, "partitions of the input topic")
	workers := fs.Int("workers", 3, "worker processes")
	kills := fs.Int("kills", 20, "SIGKILLs per mode")
	brokerFaults := fs.Int("broker-faults", 0, "broker faults per mode, among the kills (needs -kafka)")
	brokerFault := fs.String("broker-fault", "restart", "restart: SIGKILL the broker and start it again; stop: SIGSTOP it for -broker-stop")
	brokerStop := fs.Duration("broker-stop", 20*time.Second, "how long a stop fault freezes the broker")
	kafka := fs.String("kafka", "", "scripts/kafka, which runs the broker to fault (in -kafka-dir); it must be the one -brokers names")
	kafkaDir := fs.String("kafka-dir", cmp.Or(os.Getenv("FERRY_KAFKA_DIR"), "/tmp/ferry-kafka"), "the faulted broker's run dir (scripts/kafka's FERRY_KAFKA_DIR)")
	every := fs.Duration("every", 500*time.Millisecond, "mean time between chaos events")
	work := fs.Duration("work", 30*time.Millisecond, "simulated work per batch")
	rebalance := fs.Bool("rebalance", true, "also add and remove workers")
	deadline := fs.Duration("deadline", 5*time.Minute, "per mode; the run stops by itself")
	jsonPath := fs.String("json", "", "write a JSON report to this file")
	strict := fs.Bool("strict", true, "exit non-zero when a mode breaks its guarantee")
	dir := fs.String("dir", "", "keep the workers' logs in this directory (default: a temporary one, removed)")
	postgres := fs.String("postgres", os.Getenv("FERRY_POSTGRES"), "PostgreSQL URL for the eos-db mode (scripts/postgres up prints one)")
	freeze := fs.Duration("freeze", 12*time.Second, "eos-db: every fourth chaos event freezes a worker (SIGSTOP) this long, past its 10 s session timeout; 0 for none")
	return &ffcli.Command{
		Name:       "verify",
		ShortUsage: "ferry verify [-brokers B] [-modes M] [-messages N] [-kills N] [-json FILE] ...",
		ShortHelp:  "measure loss and duplicates per delivery mode at scale, on any cluster, with a JSON report",
		LongHelp: `Like demo, at scale and on any cluster: without -brokers (and $FERRY_BROKERS)
the cluster is embedded in this process. Exits 1 when a mode breaks its
guarantee (unless -strict=false).

EXAMPLES
  ferry verify -brokers 127.0.0.1:9092 -kills 100 -messages 100000 -json report.json
  ferry verify -modes alo,alo-par -rebalance=false
  ferry verify -brokers 127.0.0.1:9092 -kafka scripts/kafka -broker-faults 2
  FERRY_POSTGRES=postgres://... ferry verify -modes eos-db`,
		FlagSet: fs,
		Exec: noArgs(fs, func(ctx context.Context) error {
			cl.fromEnv()
			settings, err := sec.settings()
			if err != nil {
				return fmt.Errorf("verify: %w", err)
			}
			cfg := verify.Config{
				Partitions: int32(*partitions), Messages: *messages, Workers: *workers, Kills: *kills,
				Every: *every, Work: *work, Rebalance: *rebalance, Deadline: *deadline, Progress: stderr, Redraw: isTerminal(stderr),
				Postgres: *postgres, Freeze: *freeze, Dir: *dir,
				BrokerFaults: *brokerFaults, StopFor: *brokerStop,
			}
			if cfg.BrokerFault, err = verify.ParseBrokerFault(*brokerFault); err != nil {
				return fmt.Errorf("-broker-fault: %w", err)
			}
			if *kafka != "" {
				b := &verify.Broker{Script: *kafka, Dir: *kafkaDir}
				addr, err := b.Addr()
				if err != nil {
					return fmt.Errorf("-kafka: %w", err)
				}
				if !slices.Contains(strings.Split(*brokers, ","), addr) {
					return fmt.Errorf("-kafka: the broker in %s listens on %s, which -brokers does not name: faults would hit another cluster than the one verified", *kafkaDir, addr)
				}
				cfg.Broker = b
			}
			if *brokers != "" { // the embedded cluster is plaintext
				cfg.ClientOpts, cfg.Env = settings.Opts(), sec.env()
			}
			for _, m := range strings.Split(*modes, ",") {
				mode, err := verify.ParseMode(strings.TrimSpace(m))
				if err != nil {
					return err
				}
				cfg.Modes = append(cfg.Modes, mode)
			}
			return verifyAndPrint(ctx, cfg, *brokers, *jsonPath, *strict, stdout)
		}),
	}
}

func verifyAndPrint(ctx context.Context, cfg verify.Config, brokers, jsonPath string, strict bool, stdout io.Writer) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	where := "external cluster " + brokers
	if brokers != "" {
		cfg.Brokers = strings.Split(brokers, ",")
	} else {
		c, err := ferrytest.StartEmbedded()
		if err != nil {
			return err
		}
		defer c.Close()
		cfg.Brokers = c.Brokers()
		where = "embedded cluster at " + strings.Join(c.Brokers(), ",")
	}
	if cfg.Binary == "" {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		cfg.Binary = self
	}
	faults := ""
	if cfg.Broker != nil && cfg.BrokerFaults > 0 {
		faults = fmt.Sprintf(", %d broker faults (%s) per mode", cfg.BrokerFaults, cfg.BrokerFault)
	}
	fmt.Fprintf(stdout, "ferry verify: %d messages per mode over %d partitions, %d worker processes, %d SIGKILLs per mode%s, %s\n\n",
		cfg.Messages, cfg.Partitions, cfg.Workers, cfg.Kills, faults, where)
	rep, err := verify.Run(ctx, cfg)
	if len(rep.Results) > 0 {
		verify.PrintTable(stdout, rep)
	}
	if jsonPath != "" {
		b, jerr := json.MarshalIndent(rep, "", "  ")
		if jerr == nil {
			jerr = os.WriteFile(jsonPath, b, 0o644)
		}
		err = errors.Join(err, jerr)
	}
	if err != nil {
		return err
	}
	if strict && !rep.OK() {
		return errors.New("a delivery guarantee was violated")
	}
	return nil
}

// runDemo is a quick verify of the modes on the embedded cluster: a
// newcomer sees at-most-once lose, at-least-once duplicate and exactly-once
// do neither, measured under real crashes.
func demoCmd(stdout, stderr io.Writer) *ffcli.Command {
	fs := newFlags("demo", stderr)
	kills := fs.Int("kills", 8, "SIGKILLs per mode")
	return &ffcli.Command{
		Name:       "demo",
		ShortUsage: "ferry demo [-kills N]",
		ShortHelp:  "measure loss and duplicates of each delivery mode under real crashes (embedded cluster)",
		LongHelp: `Worker processes consume uniquely numbered messages while they are SIGKILLed
and restarted at random; the table counts what each delivery mode lost and
duplicated. Exactly once into PostgreSQL joins when $FERRY_POSTGRES is set.
Exits 1 when a mode breaks its guarantee.

EXAMPLES
  ferry demo
  ferry demo -kills 20`,
		FlagSet: fs,
		Exec: noArgs(fs, func(ctx context.Context) error {
			cfg := verify.Config{
				Modes: []verify.Mode{verify.AtMostOnce, verify.AtLeastOnce, verify.ExactlyOnce}, Messages: 4000, Partitions: 4, Workers: 2, Kills: *kills,
				Every: 400 * time.Millisecond, Work: 40 * time.Millisecond, Rebalance: true,
				Deadline: 90 * time.Second, Progress: stderr, Redraw: isTerminal(stderr),
			}
			// Exactly once into PostgreSQL joins the table when a server is at hand.
			pgNote := "To add exactly once into PostgreSQL to the table, set FERRY_POSTGRES to a PostgreSQL URL (scripts/postgres up starts one)."
			if url := os.Getenv("FERRY_POSTGRES"); url != "" {
				if err := verify.PostgresReachable(ctx, url); err != nil {
					pgNote = fmt.Sprintf("Exactly once into PostgreSQL is not in the table: FERRY_POSTGRES does not answer (%v).", err)
				} else {
					cfg.Modes, cfg.Postgres, pgNote = append(cfg.Modes, verify.ExactlyOnceDB), url, ""
				}
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			fmt.Fprintln(stdout, "ferry demo: the processing architectures of Kafka consumers and their loss/duplicate table, measured.")
			fmt.Fprintln(stdout, "Worker processes consume uniquely numbered messages while they are SIGKILLed and restarted at random.")
			err := verifyAndPrint(ctx, cfg, "", "", true, stdout)
			if pgNote != "" {
				fmt.Fprintln(stdout, pgNote)
			}
			return err
		}),
	}
}

// runWorker is the worker role of verify (an internal command).
func runWorker(ctx context.Context, args []string, _, stderr io.Writer) error {
	return verify.Worker(ctx, args, stderr)
}
