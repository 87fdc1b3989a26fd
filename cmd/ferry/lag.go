package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/peterbourgon/ff/v3/ffcli"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

func lagCmd(stdout, stderr io.Writer) *ffcli.Command {
	fs := newFlags("lag", stderr)
	cl := addClusterFlags(fs, "")
	group := fs.String("group", "", "consumer group (required)")
	asJSON := fs.Bool("json", false, "print JSON")
	return &ffcli.Command{
		Name:       "lag",
		ShortUsage: "ferry lag -group G [-json]",
		ShortHelp:  "show a consumer group's lag per partition: committed offset, end offset, lag and the member that owns it",
		LongHelp: `Lists the partitions the group's members own and those it has committed
offsets for, as kafka-consumer-groups --describe does: the committed offset
("-" when none), the partition's end offset, the lag between them ("-" without
a commit) and the owning member's id, client id and host ("-" when no member
owns it), then the total lag. Exits 1 when the group does not exist.

EXAMPLES
  ferry lag -group billing
  ferry lag -group billing -json | jq .total_lag`,
		FlagSet: fs,
		Exec: noArgs(fs, func(ctx context.Context) error {
			if *group == "" {
				return usagef("lag: -group is required")
			}
			adm, err := adminOf(cl, "lag")
			if err != nil {
				return err
			}
			defer adm.Close()
			rep, err := groupLag(ctx, adm, *group)
			if err != nil {
				return err
			}
			if *asJSON {
				return printJSON(stdout, rep)
			}
			return rep.print(stdout)
		}),
	}
}

// lagReport is a group's lag, as ferry lag prints it.
type lagReport struct {
	Group      string         `json:"group"`
	State      string         `json:"state"` // Stable, Empty, PreparingRebalance, …
	Members    int            `json:"members"`
	Partitions []partitionLag `json:"partitions"`
	TotalLag   int64          `json:"total_lag"` // over the partitions with a commit
}

type partitionLag struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Committed *int64 `json:"committed"` // nil: no commit
	End       int64  `json:"end"`
	Lag       *int64 `json:"lag"` // end - committed; nil without a commit
	MemberID  string `json:"member_id,omitempty"`
	ClientID  string `json:"client_id,omitempty"`
	Host      string `json:"host,omitempty"`
}

// errNoGroup is a group the cluster does not know.
var errNoGroup = errors.New("does not exist")

func groupLag(ctx context.Context, adm *kadm.Client, group string) (lagReport, error) {
	lags, err := adm.Lag(ctx, group)
	if err != nil {
		return lagReport{}, fmt.Errorf("lag: %w", err)
	}
	l, ok := lags[group]
	if !ok {
		return lagReport{}, fmt.Errorf("lag: group %s: no answer", group)
	}
	if err := l.Error(); errors.Is(err, kerr.GroupIDNotFound) || err == nil && l.State == "Dead" {
		return lagReport{}, fmt.Errorf("lag: group %s %w", group, errNoGroup)
	} else if err != nil {
		return lagReport{}, fmt.Errorf("lag: group %s: %w", group, err)
	}
	rep := lagReport{Group: group, State: l.State, Members: len(l.Members), Partitions: []partitionLag{}}
	for _, p := range l.Lag.Sorted() {
		if p.Err != nil {
			return rep, fmt.Errorf("lag: %s/%d: %w", p.Topic, p.Partition, p.Err)
		}
		if p.Commit.At < 0 && p.Member == nil {
			continue // neither committed nor owned: not the group's, as Kafka's tool shows it
		}
		row := partitionLag{Topic: p.Topic, Partition: p.Partition, End: p.End.Offset}
		if p.Commit.At >= 0 {
			c, lag := p.Commit.At, p.Lag
			row.Committed, row.Lag = &c, &lag
			rep.TotalLag += lag
		}
		if m := p.Member; m != nil {
			row.MemberID, row.ClientID, row.Host = m.MemberID, m.ClientID, m.ClientHost
		}
		rep.Partitions = append(rep.Partitions, row)
	}
	return rep, nil
}

func (r lagReport) print(w io.Writer) error {
	fmt.Fprintf(w, "group %s: %s, %d members\n", r.Group, r.State, r.Members)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tCOMMITTED\tEND\tLAG\tMEMBER\tCLIENT\tHOST")
	for _, p := range r.Partitions {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%s\t%s\t%s\n", p.Topic, p.Partition, orDash(p.Committed), p.End, orDash(p.Lag),
			dash(p.MemberID), dash(p.ClientID), dash(p.Host))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "total lag %d over %d partitions\n", r.TotalLag, len(r.Partitions))
	return err
}

func orDash(v *int64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprint(*v)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
