// Command ferry runs ferry's demo, an embedded Kafka cluster, a console
// consumer and the benchmarks.
//
//	ferry demo                     the delivery modes measured under crashes
//	ferry verify ...               the same, at scale, on any cluster
//	ferry tour                     a narrated walk through the at-least-once runtime
//	ferry cluster                  run an embedded cluster, print its address
//	ferry consume -topic T ...     print a topic's messages through ferry
//	ferry bench ...                ferry vs a raw franz-go loop
//
// The first SIGINT or SIGTERM drains gracefully; a second exits at once.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/ferrykit/ferry/cmd/ferry/internal/bench"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		fmt.Fprintln(os.Stderr, "ferry: stopping gracefully (signal again to exit at once)")
		cancel()
		<-sigs
		fmt.Fprintln(os.Stderr, "ferry: exiting at once")
		os.Exit(130)
	}()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	cancel()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		msg := err.Error()
		if !strings.HasPrefix(msg, "ferry: ") { // the library's errors name it already
			msg = "ferry: " + msg
		}
		fmt.Fprintln(os.Stderr, msg)
		os.Exit(1)
	}
}

const usage = `usage: ferry <command> [flags]

commands:
  demo      measure loss and duplicates of each delivery mode under real crashes (embedded cluster)
  verify    the same at scale, on any cluster (-brokers), with a JSON report
  tour      a narrated walk through ferry's at-least-once runtime
  cluster   run an embedded Kafka cluster on 127.0.0.1 and print its address
  consume   print a topic's messages, consumed through ferry
  bench     measure ferry against a raw franz-go poll loop

Run 'ferry <command> -h' for a command's flags.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "demo":
		return runDemo(ctx, rest, stdout, stderr)
	case "verify":
		return runVerify(ctx, rest, stdout, stderr)
	case "tour":
		return runTour(ctx, rest, stdout, stderr)
	case "worker":
		return runWorker(ctx, rest, stdout, stderr)
	case "cluster":
		return runCluster(ctx, rest, stdout, stderr)
	case "consume":
		return runConsume(ctx, rest, stdout, stderr)
	case "bench":
		return runBench(ctx, rest, stdout, stderr)
	case "rusage": // internal: ferry rusage REPORT CMD ARGS... (for bench)
		if len(rest) < 2 {
			return errors.New("usage: ferry rusage REPORT COMMAND [ARGS...]")
		}
		return bench.Rusage(ctx, rest[0], rest[1:])
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}
