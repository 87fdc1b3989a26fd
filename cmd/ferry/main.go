// Command ferry operates Kafka consumer groups and shows ferry at work:
//
//	ferry lag -group G             a group's lag per partition, with owners
//	ferry offsets reset ...        move a group's committed offsets (a dry run unless -execute)
//	ferry topics ...               list, describe, create and delete topics
//	ferry produce -topic T         produce lines from stdin or a file
//	ferry consume -topic T         print a topic's messages
//	ferry cluster                  run an embedded Kafka cluster, print its address
//	ferry demo                     the delivery modes measured under crashes
//	ferry verify ...               the same, at scale, on any cluster
//	ferry tour                     a narrated walk through the at-least-once runtime
//	ferry bench ...                ferry vs a raw franz-go loop
//	ferry version                  the build's version
//
// Exit codes: 0 success (and -h), 1 the command failed, 2 the command line
// is wrong (unknown command or flag, invalid value, missing argument), 130 a
// second SIGINT or SIGTERM stopped it at once. The first signal drains
// gracefully.
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
	"github.com/peterbourgon/ff/v3/ffcli"
)

// Exit codes scripts can rely on.
const (
	exitOK          = 0
	exitFailed      = 1   // the command ran and failed
	exitUsage       = 2   // the command line is wrong; nothing ran
	exitInterrupted = 130 // a second signal stopped it at once
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
		os.Exit(exitInterrupted)
	}()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	cancel()
	if msg := errorLine(err); msg != "" {
		fmt.Fprintln(os.Stderr, msg)
	}
	os.Exit(exitCode(err))
}

// errorLine is what main prints for err: nothing for help or a flag error
// the flag package printed already, else one line naming ferry once.
func errorLine(err error) string {
	var u *usageError
	if err == nil || errors.Is(err, flag.ErrHelp) || (errors.As(err, &u) && u.printed) {
		return ""
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "ferry: ") && !strings.HasPrefix(msg, "ferry ") { // the library's errors name it already
		msg = "ferry: " + msg
	}
	return msg
}

func exitCode(err error) int {
	var u *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &u):
		return exitUsage
	}
	return exitFailed
}

// usageError is a wrong command line: exit code 2.
type usageError struct {
	err     error
	printed bool // the flag package printed it with the usage already
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usagef returns a usage error.
func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// root is the command tree.
func root(stdout, stderr io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("ferry", flag.ContinueOnError)
	fs.SetOutput(stderr)
	version := fs.Bool("version", false, "print the version and exit")
	r := &ffcli.Command{
		Name:       "ferry",
		ShortUsage: "ferry <command> [flags] [arguments]",
		ShortHelp:  "operate Kafka consumer groups, and see ferry's delivery guarantees measured",
		LongHelp: strings.TrimSpace(`
Commands reach a cluster with -brokers (default $FERRY_BROKERS) and the
security flags -tls, -tls-ca, -sasl-mechanism, … (defaults from $FERRY_TLS_CA,
$FERRY_SASL_MECHANISM, …). Flags may come before or after arguments.
Run 'ferry <command> -h' for a command's flags and examples.

EXIT CODES
  0    success (and -h)
  1    the command ran and failed (unreachable cluster, a violated guarantee, …)
  2    the command line is wrong (unknown command or flag, invalid value); nothing ran
  130  a second SIGINT or SIGTERM stopped the command at once (the first drains)`),
		FlagSet: fs,
		Subcommands: []*ffcli.Command{
			lagCmd(stdout, stderr),
			offsetsCmd(stdout, stderr),
			topicsCmd(stdout, stderr),
			produceCmd(stdout, stderr),
			consumeCmd(stdout, stderr),
			uiCmd(stdout, stderr),
			clusterCmd(stdout, stderr),
			demoCmd(stdout, stderr),
			verifyCmd(stdout, stderr),
			tourCmd(stdout, stderr),
			benchCmd(stdout, stderr),
			versionCmd(stdout, stderr),
		},
	}
	r.Exec = func(ctx context.Context, args []string) error {
		if *version {
			return printVersion(stdout, false)
		}
		if len(args) > 0 {
			return usagef("unknown command %q (run 'ferry -h' for the list)", args[0])
		}
		fmt.Fprintln(stderr, ffcli.DefaultUsageFunc(r))
		return usagef("no command")
	}
	return r
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] { // internal commands, not listed
		case "worker": // a worker process of verify
			return runWorker(ctx, args[1:], stdout, stderr)
		case "rusage": // ferry rusage REPORT CMD ARGS... (for bench)
			if len(args) < 3 {
				return usagef("usage: ferry rusage REPORT COMMAND [ARGS...]")
			}
			return bench.Rusage(ctx, args[1], args[2:])
		case "help":
			args = []string{"-h"}
		}
	}
	r := root(stdout, stderr)
	if len(args) > 0 && args[0] == "-h" || len(args) > 0 && args[0] == "--help" {
		fmt.Fprintln(stdout, ffcli.DefaultUsageFunc(r)) // asked for: to stdout
		return nil
	}
	if err := r.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{err: err, printed: true}
	}
	return r.Run(ctx)
}
