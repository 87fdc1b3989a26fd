package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/ferrykit/ferry/ferrytest"
	"github.com/peterbourgon/ff/v3/ffcli"
	"github.com/twmb/franz-go/pkg/kfake"
)

// clusterCmd runs an embedded cluster until ctx ends, printing its address
// as the first line of stdout.
func clusterCmd(stdout, stderr io.Writer) *ffcli.Command {
	fs := newFlags("cluster", stderr)
	port := fs.Int("port", 0, "port on 127.0.0.1 (0 picks a free one)")
	return &ffcli.Command{
		Name:       "cluster",
		ShortUsage: "ferry cluster [-port N]",
		ShortHelp:  "run an embedded Kafka cluster on 127.0.0.1 and print its address",
		LongHelp: `The cluster (franz-go's kfake, in this process) runs until Ctrl-C. Its address
is the first line of stdout, so scripts can read it.

EXAMPLES
  ferry cluster
  ferry cluster -port 9092 &
  export FERRY_BROKERS=127.0.0.1:9092; ferry topics create orders -partitions 4`,
		FlagSet: fs,
		Exec: noArgs(fs, func(ctx context.Context) error {
			return runCluster(ctx, *port, stdout)
		}),
	}
}

func runCluster(ctx context.Context, port int, stdout io.Writer) error {
	var bad flagErrors
	bad.atLeast("port", port, 0)
	bad.atMost("port", port, 65535)
	if err := bad.err(); err != nil {
		return err
	}
	var opts []kfake.Opt
	if port != 0 {
		opts = append(opts, kfake.Ports(port))
	}
	c, err := ferrytest.StartEmbedded(opts...)
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintln(stdout, strings.Join(c.Brokers(), ","))
	<-ctx.Done()
	return nil
}
