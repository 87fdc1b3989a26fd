package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/peterbourgon/ff/v3/ffcli"
	"github.com/twmb/franz-go/pkg/kadm"
)

// adminOf returns an admin client of the command's cluster.
func adminOf(cl *clusterFlags, name string) (*kadm.Client, error) {
	c, err := cl.client(name)
	if err != nil {
		return nil, err
	}
	return kadm.NewClient(c), nil
}

func topicsCmd(stdout, stderr io.Writer) *ffcli.Command {
	fs := newFlags("topics", stderr)
	cl := addClusterFlags(fs, "")
	asJSON := fs.Bool("json", false, "print JSON")
	internal := fs.Bool("internal", false, "also list internal topics (__consumer_offsets, …)")
	return &ffcli.Command{
		Name:       "topics",
		ShortUsage: "ferry topics [list|describe|create|delete] [flags] [TOPIC ...]",
		ShortHelp:  "list, describe, create and delete topics",
		LongHelp: `Without a subcommand, lists the topics with their partition and replica counts.

EXAMPLES
  ferry topics
  ferry topics describe orders
  ferry topics create orders -partitions 6 -config retention.ms=86400000
  ferry topics delete orders`,
		FlagSet: fs,
		Subcommands: []*ffcli.Command{
			topicsListCmd(cl, stdout, stderr),
			topicsDescribeCmd(cl, stdout, stderr),
			topicsCreateCmd(cl, stdout, stderr),
			topicsDeleteCmd(cl, stdout, stderr),
		},
		Exec: noArgs(fs, func(ctx context.Context) error {
			return listTopics(ctx, cl, *asJSON, *internal, stdout)
		}),
	}
}

func topicsListCmd(cl *clusterFlags, stdout, stderr io.Writer) *ffcli.Command {
	fs := newFlags("topics list", stderr)
	cl.bind(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	internal := fs.Bool("internal", false, "also list internal topics (__consumer_offsets, …)")
	return &ffcli.Command{
		Name:       "list",
		ShortUsage: "ferry topics list [-internal] [-json]",
		ShortHelp:  "list the topics with their partition and replica counts",
		LongHelp:   "EXAMPLES\n  ferry topics list\n  ferry topics list -json | jq -r '.[].name'",
		FlagSet:    fs,
		Exec: noArgs(fs, func(ctx context.Context) error {
			return listTopics(ctx, cl, *asJSON, *internal, stdout)
		}),
	}
}

// topicNames returns the topics a topics subcommand names after its flags,
// refusing none.
func topicNames(fs *flag.FlagSet, args []string) ([]string, error) {
	topics, err := arguments(fs, args, 1<<20)
	if err == nil && len(topics) == 0 {
		err = usagef("%s: name at least one topic", strings.TrimPrefix(fs.Name(), "ferry "))
	}
	return topics, err
}

type topicRow struct {
	Name       string `json:"name"`
	Partitions int    `json:"partitions"`
	Replicas   int    `json:"replication_factor"`
	Internal   bool   `json:"internal,omitempty"`
}

func listTopics(ctx context.Context, cl *clusterFlags, asJSON, internal bool, stdout io.Writer) error {
	adm, err := adminOf(cl, "topics")
	if err != nil {
		return err
	}
	defer adm.Close()
	var details kadm.TopicDetails
	if internal {
		details, err = adm.ListTopicsWithInternal(ctx)
	} else {
		details, err = adm.ListTopics(ctx)
	}
	if err != nil {
		return fmt.Errorf("topics: %w", err)
	}
	rows := []topicRow{}
	for _, d := range details.Sorted() {
		if d.Err != nil {
			return fmt.Errorf("topics: %s: %w", d.Topic, d.Err)
		}
		rows = append(rows, topicRow{Name: d.Topic, Partitions: len(d.Partitions), Replicas: d.Partitions.NumReplicas(), Internal: d.IsInternal})
	}
	if asJSON {
		return printJSON(stdout, rows)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITIONS\tREPLICAS")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%d\n", r.Name, r.Partitions, r.Replicas)
	}
	return tw.Flush()
}

func topicsDescribeCmd(cl *clusterFlags, stdout, stderr io.Writer) *ffcli.Command {
	fs := newFlags("topics describe", stderr)
	cl.bind(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	return &ffcli.Command{
		Name:       "describe",
		ShortUsage: "ferry topics describe [-json] TOPIC ...",
		ShortHelp:  "show topics' partitions: leader, replicas, in-sync replicas, first and end offsets, and the configs set on them",
		LongHelp:   "EXAMPLES\n  ferry topics describe orders\n  ferry topics describe -json orders payments",
		FlagSet:    fs,
		Exec: func(ctx context.Context, args []string) error {
			topics, err := topicNames(fs, args)
			if err != nil {
				return err
			}
			return describeTopics(ctx, cl, topics, *asJSON, stdout)
		},
	}
}

type topicDescription struct {
	Name       string                 `json:"name"`
	Partitions []partitionDescription `json:"partitions"`
	Configs    map[string]string      `json:"configs"` // the ones set on the topic, not defaults
}

type partitionDescription struct {
	Partition int32   `json:"partition"`
	Leader    int32   `json:"leader"`
	Replicas  []int32 `json:"replicas"`
	ISR       []int32 `json:"isr"`
	Start     int64   `json:"start"`
	End       int64   `json:"end"`
}

func describeTopics(ctx context.Context, cl *clusterFlags, topics []string, asJSON bool, stdout io.Writer) error {
	adm, err := adminOf(cl, "topics describe")
	if err != nil {
		return err
	}
	defer adm.Close()
	details, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		return fmt.Errorf("topics describe: %w", err)
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return fmt.Errorf("topics describe: %w", err)
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return fmt.Errorf("topics describe: %w", err)
	}
	configs, err := adm.DescribeTopicConfigs(ctx, topics...)
	if err != nil {
		return fmt.Errorf("topics describe: %w", err)
	}
	var out []topicDescription
	for _, t := range topics {
		d, ok := details[t]
		if !ok || d.Err != nil {
			return fmt.Errorf("topics describe: %s: %w", t, errors.Join(d.Err, errIf(!ok, "not found")))
		}
		td := topicDescription{Name: t, Configs: map[string]string{}}
		for _, p := range d.Partitions.Sorted() {
			s, _ := starts.Lookup(t, p.Partition)
			e, _ := ends.Lookup(t, p.Partition)
			td.Partitions = append(td.Partitions, partitionDescription{Partition: p.Partition, Leader: p.Leader,
				Replicas: p.Replicas, ISR: p.ISR, Start: s.Offset, End: e.Offset})
		}
		if rc, err := configs.On(t, nil); err == nil {
			for _, c := range rc.Configs {
				if c.Source == 1 && c.Value != nil { // DYNAMIC_TOPIC_CONFIG: set on this topic
					td.Configs[c.Key] = *c.Value
				}
			}
		}
		out = append(out, td)
	}
	if asJSON {
		return printJSON(stdout, out)
	}
	for i, td := range out {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		fmt.Fprintf(stdout, "topic %s: %d partitions\n", td.Name, len(td.Partitions))
		keys := make([]string, 0, len(td.Configs))
		for k := range td.Configs {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			fmt.Fprintf(stdout, "  %s=%s\n", k, td.Configs[k])
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PARTITION\tLEADER\tREPLICAS\tISR\tSTART\tEND")
		for _, p := range td.Partitions {
			fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%d\t%d\n", p.Partition, p.Leader, ids(p.Replicas), ids(p.ISR), p.Start, p.End)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func ids(v []int32) string {
	s := make([]string, len(v))
	for i, id := range v {
		s[i] = fmt.Sprint(id)
	}
	return strings.Join(s, ",")
}

func errIf(cond bool, msg string) error {
	if cond {
		return errors.New(msg)
	}
	return nil
}

// configFlag collects repeated -config key=value flags.
type configFlag map[string]*string

func (c configFlag) String() string { return "" }

func (c configFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q: want key=value", s)
	}
	c[k] = &v
	return nil
}

func topicsCreateCmd(cl *clusterFlags, stdout, stderr io.Writer) *ffcli.Command {
	fs := newFlags("topics create", stderr)
	cl.bind(fs)
	partitions := fs.Int("partitions", 1, "partitions of each topic")
	replicas := fs.Int("replication-factor", -1, "replicas of each partition (-1: the broker's default)")
	configs := configFlag{}
	fs.Var(configs, "config", "a topic config, `key=value` (repeatable), e.g. retention.ms=86400000")
	return &ffcli.Command{
		Name:       "create",
		ShortUsage: "ferry topics create [-partitions N] [-replication-factor R] [-config k=v ...] TOPIC ...",
		ShortHelp:  "create topics",
		LongHelp:   "EXAMPLES\n  ferry topics create orders -partitions 6\n  ferry topics create audit -config cleanup.policy=compact -config max.message.bytes=2097152",
		FlagSet:    fs,
		Exec: func(ctx context.Context, args []string) error {
			topics, err := arguments(fs, args, 1<<20)
			if err != nil {
				return err
			}
			var bad flagErrors
			if len(topics) == 0 {
				bad = append(bad, errors.New("name at least one topic"))
			}
			bad.atLeast("partitions", *partitions, 1)
			bad.atLeast("replication-factor", *replicas, -1)
			if err := bad.err(); err != nil {
				return err
			}
			adm, err := adminOf(cl, "topics create")
			if err != nil {
				return err
			}
			defer adm.Close()
			res, err := adm.CreateTopics(ctx, int32(*partitions), int16(*replicas), configs, topics...)
			if err != nil {
				return fmt.Errorf("topics create: %w", err)
			}
			var errs []error
			for _, r := range res.Sorted() {
				if r.Err != nil {
					errs = append(errs, fmt.Errorf("topics create: %s: %w", r.Topic, r.Err))
					continue
				}
				fmt.Fprintf(stdout, "created %s (%d partitions)\n", r.Topic, r.NumPartitions)
			}
			return errors.Join(errs...)
		},
	}
}

func topicsDeleteCmd(cl *clusterFlags, stdout, stderr io.Writer) *ffcli.Command {
	fs := newFlags("topics delete", stderr)
	cl.bind(fs)
	return &ffcli.Command{
		Name:       "delete",
		ShortUsage: "ferry topics delete TOPIC ...",
		ShortHelp:  "delete topics and every message in them",
		LongHelp:   "EXAMPLES\n  ferry topics delete orders-test",
		FlagSet:    fs,
		Exec: func(ctx context.Context, args []string) error {
			topics, err := topicNames(fs, args)
			if err != nil {
				return err
			}
			adm, err := adminOf(cl, "topics delete")
			if err != nil {
				return err
			}
			defer adm.Close()
			res, err := adm.DeleteTopics(ctx, topics...)
			if err != nil {
				return fmt.Errorf("topics delete: %w", err)
			}
			var errs []error
			for _, r := range res.Sorted() {
				if r.Err != nil {
					errs = append(errs, fmt.Errorf("topics delete: %s: %w", r.Topic, r.Err))
					continue
				}
				fmt.Fprintf(stdout, "deleted %s\n", r.Topic)
			}
			return errors.Join(errs...)
		},
	}
}
