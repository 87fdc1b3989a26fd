package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/peterbourgon/ff/v3/ffcli"
	"github.com/twmb/franz-go/pkg/kgo"
)

// headerFlag collects repeated -header key=value flags.
type headerFlag []kgo.RecordHeader

func (h *headerFlag) String() string { return "" }

func (h *headerFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q: want key=value", s)
	}
	*h = append(*h, kgo.RecordHeader{Key: k, Value: []byte(v)})
	return nil
}

func produceCmd(stdout, stderr io.Writer) *ffcli.Command {
	fs := newFlags("produce", stderr)
	cl := addClusterFlags(fs, "")
	topic := fs.String("topic", "", "topic to produce to (required)")
	file := fs.String("file", "", "read lines from this file instead of stdin")
	sep := fs.String("key-separator", "", "split each line at the first occurrence of this into key and value (default: the whole line is the value, the key is nil)")
	partition := fs.Int("partition", -1, "produce to this partition (-1: by the key's hash; messages without a key go to one partition per batch)")
	var headers headerFlag
	fs.Var(&headers, "header", "a header on every message, `key=value` (repeatable)")
	quiet := fs.Bool("q", false, "do not print the count at the end")
	return &ffcli.Command{
		Name:       "produce",
		ShortUsage: "ferry produce -topic T [-file F] [-key-separator S] [-header k=v ...] [-partition P]",
		ShortHelp:  "produce one message per line of stdin or a file",
		LongHelp: `Every line (without its newline) is one message; an empty line is an empty
value. Waits until the cluster acknowledged every message, then prints how many
were produced (to stderr). Lines may be up to 16 MiB.

EXAMPLES
  echo hello | ferry produce -topic greetings
  printf 'k1:v1\nk2:v2\n' | ferry produce -topic orders -key-separator :
  ferry produce -topic orders -file orders.txt -header source=import -header v=2`,
		FlagSet: fs,
		Exec: noArgs(fs, func(ctx context.Context) error {
			var bad flagErrors
			bad.required("topic", *topic)
			bad.atLeast("partition", *partition, -1)
			if err := bad.err(); err != nil {
				return err
			}
			in := io.Reader(os.Stdin)
			if *file != "" {
				f, err := os.Open(*file)
				if err != nil {
					return fmt.Errorf("produce: %w", err)
				}
				defer f.Close()
				in = f
			}
			opts := []kgo.Opt{kgo.DefaultProduceTopic(*topic)}
			if *partition >= 0 {
				opts = append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))
			}
			client, err := cl.client("produce", opts...)
			if err != nil {
				return err
			}
			defer client.Close()
			n, err := produceLines(ctx, client, in, *sep, headers, int32(*partition))
			if !*quiet {
				fmt.Fprintf(stderr, "produced %d messages to %s\n", n, *topic)
			}
			return err
		}),
	}
}

// produceLines produces each line of in and waits for every answer; it
// returns how many the cluster acknowledged and the first error. The
// client's buffer bounds what is in flight (Produce blocks when it is full).
func produceLines(ctx context.Context, client *kgo.Client, in io.Reader, sep string, headers []kgo.RecordHeader, partition int32) (int, error) {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		ok    int
		first error
	)
	failed := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return first != nil
	}
	for sc.Scan() && !failed() {
		line := sc.Text()
		r := &kgo.Record{Value: []byte(line), Headers: headers, Partition: partition}
		if sep != "" {
			if k, v, found := strings.Cut(line, sep); found {
				r.Key, r.Value = []byte(k), []byte(v)
			}
		}
		wg.Add(1)
		client.Produce(ctx, r, func(_ *kgo.Record, err error) {
			mu.Lock()
			if err == nil {
				ok++
			} else if first == nil {
				first = err
			}
			mu.Unlock()
			wg.Done()
		})
	}
	wg.Wait()
	if err := sc.Err(); err != nil && first == nil {
		first = err
	}
	if first != nil {
		return ok, fmt.Errorf("produce: %w", first)
	}
	return ok, nil
}
