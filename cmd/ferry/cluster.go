package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/ferrykit/ferry/ferrytest"
	"github.com/twmb/franz-go/pkg/kfake"
)

// runCluster runs an embedded cluster until ctx ends, printing its address
// as the first line of stdout.
func runCluster(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	port := fs.Int("port", 0, "port on 127.0.0.1 (0 picks a free one)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var bad flagErrors
	bad.atLeast("port", *port, 0)
	bad.atMost("port", *port, 65535)
	if err := bad.err(); err != nil {
		return err
	}
	var opts []kfake.Opt
	if *port != 0 {
		opts = append(opts, kfake.Ports(*port))
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
