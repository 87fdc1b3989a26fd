package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/ferrykit/ferry"
	"github.com/peterbourgon/ff/v3/ffcli"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func consumeCmd(stdout, stderr io.Writer) *ffcli.Command {
	fs := newFlags("consume", stderr)
	cl := addClusterFlags(fs, "")
	topic := fs.String("topic", "", "topic to read (required)")
	partition := fs.Int("partition", -1, "read this partition only (-1: all)")
	offset := fs.String("offset", "earliest", "where to start: earliest, latest, an offset (with -partition) or -N for the last N of each partition")
	count := fs.Int("count", 0, "stop after this many messages (0: no limit)")
	untilEnd := fs.Bool("until-end", false, "stop at the end each partition had when the command started")
	format := fs.String("format", "text", "output: text or json (one object a line)")
	group := fs.String("group", "", "consume as a member of this consumer group through ferry, committing (at least once); without it nothing is committed")
	sleep := fs.Duration("sleep", 0, "with -group: pause after printing each batch, to watch draining on shutdown")
	shutdownTimeout := fs.Duration("shutdown-timeout", 60*time.Second, "with -group: graceful shutdown bound")
	return &ffcli.Command{
		Name:       "consume",
		ShortUsage: "ferry consume -topic T [-partition P] [-offset O] [-count N] [-until-end] [-format text|json] [-group G]",
		ShortHelp:  "print a topic's messages with their keys, headers and timestamps",
		LongHelp: `Reads without a consumer group and commits nothing, unless -group is given:
then it consumes through ferry as a member of that group, at least once, and
commits. Text output shows a nil key or value as null and an empty one as "";
json output has null for nil, and key_base64/value_base64 for bytes that are
not UTF-8.

EXAMPLES
  ferry consume -topic orders -until-end
  ferry consume -topic orders -partition 2 -offset 1500 -count 10
  ferry consume -topic orders -offset -5 -format json | jq .value
  ferry consume -topic orders -group console   # commits as group "console"`,
		FlagSet: fs,
		Exec: noArgs(fs, func(ctx context.Context) error {
			var bad flagErrors
			bad.required("topic", *topic)
			bad.notNegative("sleep", *sleep)
			bad.atLeast("count", *count, 0)
			bad.atLeast("partition", *partition, -1)
			if *format != "text" && *format != "json" {
				bad = append(bad, fmt.Errorf("-format %q: must be text or json", *format))
			}
			start, err := parseStart(*offset, *partition)
			if err != nil {
				bad = append(bad, err)
			}
			if err := bad.err(); err != nil {
				return err
			}
			p := &printer{w: stdout, json: *format == "json"}
			if *group != "" {
				return consumeGroup(ctx, cl, *group, *topic, start, *sleep, *shutdownTimeout, p, stderr)
			}
			return consumeDirect(ctx, cl, *topic, int32(*partition), start, *count, *untilEnd, p)
		}),
	}
}

// start is where consume begins in each partition.
type start struct {
	earliest, latest bool
	at               int64 // an exact offset, or
	last             int64 // the last N of each partition
}

func parseStart(s string, partition int) (start, error) {
	switch s {
	case "earliest", "oldest", "start":
		return start{earliest: true}, nil
	case "latest", "newest", "end":
		return start{latest: true}, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	switch {
	case err != nil:
		return start{}, fmt.Errorf("-offset %q: must be earliest, latest, an offset or -N", s)
	case n < 0:
		return start{last: -n}, nil
	case partition < 0:
		return start{}, fmt.Errorf("-offset %d: an exact offset needs -partition", n)
	}
	return start{at: n}, nil
}

// consumeDirect reads the topic with a plain client: no group, no commit.
func consumeDirect(ctx context.Context, cl *clusterFlags, topic string, partition int32, st start, count int, untilEnd bool, p *printer) error {
	admClient, err := cl.client("consume")
	if err != nil {
		return err
	}
	adm := kadm.NewClient(admClient)
	defer adm.Close()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	from := map[int32]kgo.Offset{}
	remaining := map[int32]int64{} // partition → its end, for -until-end
	found := false
	ends.Each(func(o kadm.ListedOffset) {
		if partition >= 0 && o.Partition != partition {
			return
		}
		found = true
		s, _ := starts.Lookup(topic, o.Partition)
		var at int64
		switch {
		case st.earliest:
			at = s.Offset
		case st.latest:
			at = o.Offset
		case st.last > 0:
			at = max(o.Offset-st.last, s.Offset)
		default:
			at = st.at
		}
		from[o.Partition] = kgo.NewOffset().At(at)
		if at < o.Offset {
			remaining[o.Partition] = o.Offset
		}
	})
	if !found {
		return fmt.Errorf("consume: topic %s has no partition %d", topic, partition)
	}
	if untilEnd && len(remaining) == 0 {
		return nil
	}
	client, err := cl.client("consume", kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}))
	if err != nil {
		return err
	}
	defer client.Close()
	printed := 0
	for {
		fetches := client.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err := fetches.Err0(); err != nil {
			return fmt.Errorf("consume: %w", err)
		}
		for it := fetches.RecordIter(); !it.Done(); {
			r := it.Next()
			if untilEnd {
				end, ok := remaining[r.Partition]
				if !ok {
					continue
				}
				if r.Offset+1 >= end {
					delete(remaining, r.Partition)
				}
				if r.Offset >= end {
					continue
				}
			}
			if err := p.print(r); err != nil {
				return err
			}
			printed++
			if count > 0 && printed >= count {
				return nil
			}
		}
		if untilEnd && len(remaining) == 0 {
			return nil
		}
	}
}

// consumeGroup consumes through ferry as a member of group, at least once,
// committing.
func consumeGroup(ctx context.Context, cl *clusterFlags, group, topic string, st start, sleep, shutdownTimeout time.Duration, p *printer, stderr io.Writer) error {
	reach, err := cl.ferryOptions("consume")
	if err != nil {
		return err
	}
	opts := append([]ferry.Option{
		ferry.Logger(slog.New(slog.NewTextHandler(stderr, nil))),
		ferry.ShutdownTimeout(shutdownTimeout),
	}, reach...)
	initial := ferry.Earliest
	if st.latest {
		initial = ferry.Latest
	} else if !st.earliest {
		return usagef("consume: with -group, -offset is earliest or latest (where to start without a commit)")
	}
	var mu sync.Mutex
	print := func(_ context.Context, b *ferry.Batch) error {
		mu.Lock()
		for _, m := range b.Messages {
			if err := p.print(m); err != nil {
				mu.Unlock()
				return err
			}
		}
		mu.Unlock()
		if sleep > 0 {
			time.Sleep(sleep) // deliberately ignores ctx: shows draining
		}
		return nil
	}
	opts = append(opts, ferry.RouteFunc(group, topic, print, ferry.InitialOffset(initial)))
	app, err := ferry.New(opts...)
	if err != nil {
		return err
	}
	return app.Run(ctx)
}

// printer writes records as text or JSON lines.
type printer struct {
	w    io.Writer
	json bool
}

func (p *printer) print(r *kgo.Record) error {
	if p.json {
		return json.NewEncoder(p.w).Encode(jsonRecordOf(r))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s/%d@%d %s key=%s value=%s", r.Topic, r.Partition, r.Offset,
		r.Timestamp.UTC().Format(time.RFC3339Nano), quoted(r.Key), quoted(r.Value))
	for _, h := range r.Headers {
		fmt.Fprintf(&b, " header[%q]=%s", h.Key, quoted(h.Value))
	}
	b.WriteByte('\n')
	_, err := io.WriteString(p.w, b.String())
	return err
}

// quoted shows bytes in Go syntax, nil as null and empty as "".
func quoted(b []byte) string {
	if b == nil {
		return "null"
	}
	return strconv.Quote(string(b))
}

type jsonRecord struct {
	Topic       string       `json:"topic"`
	Partition   int32        `json:"partition"`
	Offset      int64        `json:"offset"`
	Timestamp   time.Time    `json:"timestamp"`
	Key         *string      `json:"key"`
	KeyBase64   string       `json:"key_base64,omitempty"`
	Value       *string      `json:"value"`
	ValueBase64 string       `json:"value_base64,omitempty"`
	Headers     []jsonHeader `json:"headers,omitempty"`
}

type jsonHeader struct {
	Key         string  `json:"key"`
	Value       *string `json:"value"`
	ValueBase64 string  `json:"value_base64,omitempty"`
}

// jsonBytes returns b as a string, or nil; bytes that are not UTF-8 come
// back base64-encoded in the second result instead.
func jsonBytes(b []byte) (*string, string) {
	switch {
	case b == nil:
		return nil, ""
	case utf8.Valid(b):
		s := string(b)
		return &s, ""
	}
	return nil, base64.StdEncoding.EncodeToString(b)
}

func jsonRecordOf(r *kgo.Record) jsonRecord {
	j := jsonRecord{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp.UTC()}
	j.Key, j.KeyBase64 = jsonBytes(r.Key)
	j.Value, j.ValueBase64 = jsonBytes(r.Value)
	for _, h := range r.Headers {
		jh := jsonHeader{Key: h.Key}
		jh.Value, jh.ValueBase64 = jsonBytes(h.Value)
		j.Headers = append(j.Headers, jh)
	}
	return j
}
