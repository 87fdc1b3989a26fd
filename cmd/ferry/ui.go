package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/ferrykit/ferry/dashboard"
	"github.com/peterbourgon/ff/v3/ffcli"
	"github.com/twmb/franz-go/pkg/kadm"
)

func uiCmd(stdout, stderr io.Writer) *ffcli.Command {
	fs := newFlags("ui", stderr)
	cl := addClusterFlags(fs, "")
	addr := fs.String("addr", "127.0.0.1:8080", "where to listen; another host than localhost opens the page to the network")
	return &ffcli.Command{
		Name:       "ui",
		ShortUsage: "ferry ui [-addr HOST:PORT]",
		ShortHelp:  "serve a live web dashboard of the cluster's consumer groups",
		LongHelp: `Serves ferry's dashboard page for any cluster, from its admin API: every
consumer group, its members and their partitions with committed and end
offsets and lag, and the committed messages per second. (An app that mounts
the dashboard itself also shows retries, errors, dead letters and messages in
flight, and may offer pause, resume and skip to an offset on its own
partitions.) This page is read-only: it offers no actions. To move a group's
offsets, use 'ferry offsets reset', which like Kafka's tool requires the group
to have no live members. Listens on localhost unless -addr says otherwise;
Ctrl-C stops it.

EXAMPLES
  ferry ui                          # then open http://127.0.0.1:8080/
  ferry ui -addr 0.0.0.0:8080       # reachable from other machines`,
		FlagSet: fs,
		Exec: noArgs(fs, func(ctx context.Context) error {
			adm, err := adminOf(cl, "ui")
			if err != nil {
				return err
			}
			defer adm.Close()
			ln, err := net.Listen("tcp", *addr)
			if err != nil {
				return fmt.Errorf("ui: %w", err)
			}
			srv := &http.Server{Handler: dashboard.Handler(clusterSnapshot(adm, cl.seeds())), ReadHeaderTimeout: 10 * time.Second}
			fmt.Fprintf(stdout, "ferry dashboard at http://%s/\n", ln.Addr())
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ln) }()
			select {
			case err := <-done:
				return fmt.Errorf("ui: %w", err)
			case <-ctx.Done():
			}
			shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err = srv.Shutdown(shut)
			if serr := <-done; !errors.Is(serr, http.ErrServerClosed) {
				err = errors.Join(err, serr)
			}
			return err
		}),
	}
}

// clusterSnapshot is the dashboard's source for a whole cluster: every
// consumer group's lag, by member, from the admin API.
func clusterSnapshot(adm *kadm.Client, seeds []string) dashboard.Source {
	return func(ctx context.Context) (dashboard.Snapshot, error) {
		listed, err := adm.ListGroups(ctx)
		if err != nil {
			return dashboard.Snapshot{}, err
		}
		s := dashboard.Snapshot{Time: time.Now(), Source: "cluster " + strings.Join(seeds, ","), Groups: []dashboard.Group{}}
		if len(listed.Groups()) == 0 {
			return s, nil
		}
		lags, err := adm.Lag(ctx, listed.Groups()...)
		if err != nil {
			return dashboard.Snapshot{}, err
		}
		for _, l := range lags.Sorted() {
			if l.Error() != nil {
				continue
			}
			g := dashboard.Group{Name: l.Group, State: l.State}
			members := map[string]int{}
			for _, m := range l.Members {
				members[m.MemberID] = len(g.Members)
				g.Members = append(g.Members, dashboard.Member{ID: m.MemberID, ClientID: m.ClientID, Host: m.ClientHost, Partitions: []dashboard.Partition{}})
			}
			for _, p := range l.Lag.Sorted() {
				if p.Err != nil || p.Commit.At < 0 && p.Member == nil {
					continue
				}
				row := dashboard.Partition{Topic: p.Topic, Partition: p.Partition, State: "unowned", Committed: p.Commit.At, End: p.End.Offset, Lag: p.Lag,
					Queued: -1, InFlight: -1} // only the app knows
				if p.Commit.At >= 0 {
					g.Processed += p.Commit.At
				}
				i := -1
				if p.Member != nil {
					i, row.State = members[p.Member.MemberID], "owned"
				}
				if i < 0 {
					if len(g.Members) == 0 || g.Members[len(g.Members)-1].ID != "" {
						g.Members = append(g.Members, dashboard.Member{Partitions: []dashboard.Partition{}})
					}
					i = len(g.Members) - 1
				}
				g.Members[i].Partitions = append(g.Members[i].Partitions, row)
			}
			s.Groups = append(s.Groups, g)
		}
		return s, nil
	}
}
