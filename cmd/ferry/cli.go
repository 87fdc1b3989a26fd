package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/ferrykit/ferry"
	"github.com/peterbourgon/ff/v3/ffcli"
	"github.com/twmb/franz-go/pkg/kgo"
)

// newFlags returns a command's flag set; the flag package prints its errors
// and the command's usage to stderr.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("ferry "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// arguments parses what follows a command's first positional argument, so
// that flags after arguments count instead of being ignored as the flag
// package does, and returns the positional arguments. A command taking at
// most max of them refuses more.
func arguments(fs *flag.FlagSet, args []string, max int) ([]string, error) {
	var pos []string
	for len(args) > 0 {
		a := args[0]
		switch {
		case a == "--":
			pos = append(pos, args[1:]...)
			args = nil
		case len(a) > 1 && a[0] == '-':
			if err := fs.Parse(args); err != nil {
				return nil, &usageError{err: err, printed: true}
			}
			args = fs.Args()
		default:
			pos = append(pos, a)
			args = args[1:]
		}
	}
	if len(pos) > max {
		return nil, usagef("%s: unexpected argument %q", fs.Name(), pos[max])
	}
	return pos, nil
}

// noArgs is the Exec of a command that takes flags and no arguments: it
// parses the flags (also those after a stray argument, see arguments),
// refuses any argument, then runs exec.
func noArgs(fs *flag.FlagSet, exec func(context.Context) error) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if _, err := arguments(fs, args, 0); err != nil {
			return err
		}
		return exec(ctx)
	}
}

// clusterFlags are the flags of the commands that reach a cluster: -brokers
// and the security flags.
type clusterFlags struct {
	brokers *string
	sec     *securityFlags
}

func addClusterFlags(fs *flag.FlagSet, brokersUsage string) *clusterFlags {
	if brokersUsage == "" {
		brokersUsage = "seed brokers, comma separated"
	}
	return &clusterFlags{
		brokers: fs.String("brokers", "", brokersUsage+" ($FERRY_BROKERS)"),
		sec:     addSecurityFlags(fs),
	}
}

// fromEnv sets -brokers from $FERRY_BROKERS when the flag was not given.
func (c *clusterFlags) fromEnv() {
	if *c.brokers == "" {
		*c.brokers = os.Getenv("FERRY_BROKERS")
	}
}

// bind defines the flags in fs too, sharing their values (see
// securityFlags.bind).
func (c *clusterFlags) bind(fs *flag.FlagSet) *clusterFlags {
	fs.StringVar(c.brokers, "brokers", "", "seed brokers, comma separated ($FERRY_BROKERS)")
	c.sec.bind(fs)
	return c
}

// seeds returns the seed brokers: -brokers, else $FERRY_BROKERS; none when
// neither is set.
func (c *clusterFlags) seeds() []string {
	s := *c.brokers
	if s == "" {
		s = os.Getenv("FERRY_BROKERS")
	}
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// client returns a franz-go client of the cluster, for the commands that
// need one (admin, produce, consume).
func (c *clusterFlags) client(name string, opts ...kgo.Opt) (*kgo.Client, error) {
	seeds := c.seeds()
	if len(seeds) == 0 {
		return nil, usagef("%s: no brokers: give -brokers or set FERRY_BROKERS", name)
	}
	s, err := c.sec.settings()
	if err != nil {
		return nil, usagef("%s: %w", name, err)
	}
	opts = append([]kgo.Opt{kgo.SeedBrokers(seeds...)}, append(s.Opts(), opts...)...)
	return kgo.NewClient(opts...)
}

// ferryOptions returns the options reaching the cluster for a ferry app.
func (c *clusterFlags) ferryOptions(name string) ([]ferry.Option, error) {
	seeds := c.seeds()
	if len(seeds) == 0 {
		return nil, usagef("%s: no brokers: give -brokers or set FERRY_BROKERS", name)
	}
	opts, err := c.sec.options()
	if err != nil {
		return nil, usagef("%s: %w", name, err)
	}
	return append(opts, ferry.Brokers(seeds...)), nil
}

// isTerminal reports whether w is a terminal, where a progress line may be
// redrawn in place; elsewhere (a file, a pipe) progress is plain lines.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// buildVersion describes this binary: its module version, the commit it
// was built from and the Go that built it.
type buildVersion struct {
	Version  string `json:"version"`
	Commit   string `json:"commit,omitempty"`
	Time     string `json:"time,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	Go       string `json:"go"`
	Platform string `json:"platform"`
}

// version is set at build time by a release
// (-ldflags "-X main.version=v1.2.3"); else the module's version is shown.
var version string

func readVersion() buildVersion {
	v := buildVersion{Version: version, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if v.Version == "" {
		v.Version = info.Main.Version
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

func printVersion(w io.Writer, asJSON bool) error {
	v := readVersion()
	if asJSON {
		return printJSON(w, v)
	}
	line := "ferry " + v.Version
	if v.Commit != "" {
		c := v.Commit[:min(12, len(v.Commit))]
		if v.Modified {
			c += " with local changes"
		}
		line += " (commit " + c + ", " + v.Time + ")"
	}
	_, err := fmt.Fprintf(w, "%s %s %s\n", line, v.Go, v.Platform)
	return err
}

func versionCmd(stdout, stderr io.Writer) *ffcli.Command {
	fs := newFlags("version", stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	return &ffcli.Command{
		Name:       "version",
		ShortUsage: "ferry version [-json]",
		ShortHelp:  "print ferry's version, the commit it was built from and the Go that built it",
		LongHelp:   "EXAMPLES\n  ferry version\n  ferry version -json | jq -r .commit",
		FlagSet:    fs,
		Exec: noArgs(fs, func(_ context.Context) error {
			return printVersion(stdout, *asJSON)
		}),
	}
}
