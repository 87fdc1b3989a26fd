package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

func offsetsCmd(stdout, stderr io.Writer) *ffcli.Command {
	fs := newFlags("offsets", stderr)
	cl := addClusterFlags(fs, "")
	c := &ffcli.Command{
		Name:        "offsets",
		ShortUsage:  "ferry offsets reset -group G -topic T (-to-earliest|-to-latest|-to-offset N|-to-time T|-shift-by N) [-execute]",
		ShortHelp:   "move a consumer group's committed offsets",
		LongHelp:    "EXAMPLES\n  ferry offsets reset -group billing -topic invoices -to-earliest\n  ferry offsets reset -group billing -topic invoices -shift-by -100 -execute",
		FlagSet:     fs,
		Subcommands: []*ffcli.Command{offsetsResetCmd(cl, stdout, stderr)},
	}
	c.Exec = func(_ context.Context, args []string) error {
		fmt.Fprint(stderr, ffcli.DefaultUsageFunc(c))
		if len(args) > 0 {
			return usagef("offsets: unknown subcommand %q", args[0])
		}
		return usagef("offsets: name a subcommand: reset")
	}
	return c
}

// resetTarget is where offsets reset moves a group: exactly one of its
// fields is set.
type resetTarget struct {
	earliest, latest bool
	offset, shift    *int64
	time             *time.Time
}

func (t resetTarget) String() string {
	switch {
	case t.earliest:
		return "the earliest offsets"
	case t.latest:
		return "the latest offsets"
	case t.offset != nil:
		return fmt.Sprintf("offset %d", *t.offset)
	case t.shift != nil:
		return fmt.Sprintf("the committed offsets shifted by %d", *t.shift)
	}
	return "the first offsets at or after " + t.time.Format(time.RFC3339Nano)
}

func offsetsResetCmd(cl *clusterFlags, stdout, stderr io.Writer) *ffcli.Command {
	fs := newFlags("offsets reset", stderr)
	cl.bind(fs)
	group := fs.String("group", "", "consumer group (required)")
	topic := fs.String("topic", "", "topic whose offsets move (required)")
	partition := fs.Int("partition", -1, "move this partition only (-1: all)")
	earliest := fs.Bool("to-earliest", false, "to each partition's first offset")
	latest := fs.Bool("to-latest", false, "to each partition's end: skip everything not consumed yet")
	toOffset := fs.String("to-offset", "", "to this offset (clamped to each partition's first and end offsets)")
	toTime := fs.String("to-time", "", "to the first message at or after this time: RFC 3339 (2026-01-02T15:04:05Z) or Unix milliseconds")
	shift := fs.String("shift-by", "", "by this many messages from the committed offset, negative to go back (clamped)")
	execute := fs.Bool("execute", false, "commit the new offsets (without it, only print the plan)")
	asJSON := fs.Bool("json", false, "print JSON")
	return &ffcli.Command{
		Name:       "reset",
		ShortUsage: "ferry offsets reset -group G -topic T (-to-earliest|-to-latest|-to-offset N|-to-time T|-shift-by N) [-partition P] [-execute]",
		ShortHelp:  "move a consumer group's committed offsets on a topic: a dry run printing the plan unless -execute",
		LongHelp: `Prints each partition's committed offset and the one it would move to. With
-execute, commits the new offsets. Refused (exit 1) while the group has live
members — stop the consumers first — as kafka-consumer-groups --reset-offsets
refuses. Offsets past a partition's ends are clamped to them.

EXAMPLES
  ferry offsets reset -group billing -topic invoices -to-earliest
  ferry offsets reset -group billing -topic invoices -to-time 2026-12-01T09:00:00Z -execute
  ferry offsets reset -group billing -topic invoices -partition 3 -to-offset 1500 -execute
  ferry offsets reset -group billing -topic invoices -shift-by -100 -json`,
		FlagSet: fs,
		Exec: noArgs(fs, func(ctx context.Context) error {
			var bad flagErrors
			bad.required("group", *group)
			bad.required("topic", *topic)
			bad.atLeast("partition", *partition, -1)
			target, err := parseTarget(*earliest, *latest, *toOffset, *toTime, *shift)
			if err != nil {
				bad = append(bad, err)
			}
			if err := bad.err(); err != nil {
				return err
			}
			adm, err := adminOf(cl, "offsets reset")
			if err != nil {
				return err
			}
			defer adm.Close()
			plan, err := planReset(ctx, adm, *group, *topic, int32(*partition), target)
			if err != nil {
				return err
			}
			if *execute {
				if err := plan.execute(ctx, adm); err != nil {
					return err
				}
			}
			if *asJSON {
				return printJSON(stdout, plan)
			}
			return plan.print(stdout, target)
		}),
	}
}

func parseTarget(earliest, latest bool, offset, at, shift string) (resetTarget, error) {
	var t resetTarget
	n := 0
	if earliest {
		t.earliest = true
		n++
	}
	if latest {
		t.latest = true
		n++
	}
	if offset != "" {
		v, err := strconv.ParseInt(offset, 10, 64)
		if err != nil || v < 0 {
			return t, fmt.Errorf("-to-offset %q: must be an offset (0 or more)", offset)
		}
		t.offset = &v
		n++
	}
	if shift != "" {
		v, err := strconv.ParseInt(shift, 10, 64)
		if err != nil {
			return t, fmt.Errorf("-shift-by %q: must be a whole number", shift)
		}
		t.shift = &v
		n++
	}
	if at != "" {
		tm, err := time.Parse(time.RFC3339Nano, at)
		if err != nil {
			ms, merr := strconv.ParseInt(at, 10, 64)
			if merr != nil {
				return t, fmt.Errorf("-to-time %q: must be RFC 3339 (2026-01-02T15:04:05Z) or Unix milliseconds", at)
			}
			tm = time.UnixMilli(ms)
		}
		t.time = &tm
		n++
	}
	if n != 1 {
		return t, errors.New("give exactly one of -to-earliest, -to-latest, -to-offset, -to-time, -shift-by")
	}
	return t, nil
}

// resetPlan is what offsets reset does (or did, with -execute).
type resetPlan struct {
	Group      string           `json:"group"`
	Topic      string           `json:"topic"`
	Executed   bool             `json:"executed"`
	Partitions []resetPartition `json:"partitions"`
}

type resetPartition struct {
	Partition int32  `json:"partition"`
	Current   *int64 `json:"current"` // nil: no commit
	New       int64  `json:"new"`
}

// errGroupActive refuses a reset while the group has members.
var errGroupActive = errors.New("has live members")

func planReset(ctx context.Context, adm *kadm.Client, group, topic string, partition int32, t resetTarget) (resetPlan, error) {
	plan := resetPlan{Group: group, Topic: topic}
	described, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return plan, fmt.Errorf("offsets reset: %w", err)
	}
	d := described[group]
	if d.Err != nil && !errors.Is(d.Err, kerr.GroupIDNotFound) { // a group not known yet is inactive
		return plan, fmt.Errorf("offsets reset: group %s: %w", group, d.Err)
	}
	if len(d.Members) > 0 || d.State != "Empty" && d.State != "Dead" {
		return plan, fmt.Errorf("offsets reset: group %s %w (%d, state %s): stop its consumers first; offsets can only be reset while a group is inactive",
			group, errGroupActive, len(d.Members), d.State)
	}
	starts, err := listed(adm.ListStartOffsets(ctx, topic))
	if err != nil {
		return plan, fmt.Errorf("offsets reset: first offsets of %s: %w", topic, err)
	}
	ends, err := listed(adm.ListEndOffsets(ctx, topic))
	if err != nil {
		return plan, fmt.Errorf("offsets reset: end offsets of %s: %w", topic, err)
	}
	var atTime kadm.ListedOffsets
	if t.time != nil {
		if atTime, err = listed(adm.ListOffsetsAfterMilli(ctx, t.time.UnixMilli(), topic)); err != nil {
			return plan, fmt.Errorf("offsets reset: offsets of %s at %s: %w", topic, t.time.Format(time.RFC3339), err)
		}
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err == nil {
		err = committed.Error()
	}
	if errors.Is(err, kerr.GroupIDNotFound) { // no commit yet
		committed, err = nil, nil
	}
	if err != nil {
		return plan, fmt.Errorf("offsets reset: committed offsets of %s: %w", group, err)
	}
	var errs []error
	ends.Each(func(e kadm.ListedOffset) {
		if partition >= 0 && e.Partition != partition {
			return
		}
		s, _ := starts.Lookup(topic, e.Partition)
		row := resetPartition{Partition: e.Partition}
		if c, ok := committed.Lookup(topic, e.Partition); ok && c.At >= 0 {
			row.Current = &c.At
		}
		switch {
		case t.earliest:
			row.New = s.Offset
		case t.latest:
			row.New = e.Offset
		case t.offset != nil:
			row.New = *t.offset
		case t.time != nil:
			row.New = e.Offset
			if a, ok := atTime.Lookup(topic, e.Partition); ok && a.Offset >= 0 {
				row.New = a.Offset
			}
		case t.shift != nil:
			if row.Current == nil {
				errs = append(errs, fmt.Errorf("offsets reset: %s/%d has no committed offset to shift", topic, e.Partition))
				return
			}
			row.New = *row.Current + *t.shift
		}
		row.New = min(max(row.New, s.Offset), e.Offset)
		plan.Partitions = append(plan.Partitions, row)
	})
	if err := errors.Join(errs...); err != nil {
		return plan, err
	}
	if len(plan.Partitions) == 0 {
		return plan, fmt.Errorf("offsets reset: topic %s has no partition %d", topic, partition)
	}
	slices.SortFunc(plan.Partitions, func(a, b resetPartition) int { return cmp.Compare(a.Partition, b.Partition) })
	return plan, nil
}

// listed returns l, or the first error of the listing.
func listed(l kadm.ListedOffsets, err error) (kadm.ListedOffsets, error) {
	if err == nil {
		err = l.Error()
	}
	return l, err
}

func (p *resetPlan) execute(ctx context.Context, adm *kadm.Client) error {
	var os kadm.Offsets
	for _, r := range p.Partitions {
		os.AddOffset(p.Topic, r.Partition, r.New, -1)
	}
	resp, err := adm.CommitOffsets(ctx, p.Group, os)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("offsets reset: committing: %w", err)
	}
	p.Executed = true
	return nil
}

func (p resetPlan) print(w io.Writer, t resetTarget) error {
	fmt.Fprintf(w, "group %s, topic %s: to %s\n", p.Group, p.Topic, t)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tCURRENT\tNEW")
	for _, r := range p.Partitions {
		fmt.Fprintf(tw, "%d\t%s\t%d\n", r.Partition, orDash(r.Current), r.New)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	msg := "dry run: nothing changed; add -execute to commit these offsets"
	if p.Executed {
		msg = "committed"
	}
	_, err := fmt.Fprintln(w, msg)
	return err
}
