// Package ferrytest provides a Kafka cluster for tests and demos, the way
// net/http/httptest provides a server: an embedded, in-process cluster
// (franz-go's kfake, real TCP on 127.0.0.1), or — when FERRY_BROKERS is set —
// the real cluster it names, so one suite runs against both. A secured real
// cluster is reached with the same FERRY_TLS* and FERRY_SASL* environment
// variables ferry reads.
//
// A test gets a cluster that closes when it ends with New, a topic with
// NewTopic, messages with Fill, and runs an app in the background with Run:
//
//	c := ferrytest.New(t)
//	topic := ferrytest.NewTopic(t, c, 1)
//	ferrytest.Fill(t, c, topic, 0, 100)
//	app, err := ferry.New(ferry.Brokers(c.Brokers()...), ferry.RouteFunc("g", topic, consume))
//	if err != nil {
//		t.Fatal(err)
//	}
//	running := ferrytest.Run(t, app)
//	// … wait for what consume saw, then:
//	if err := running.Stop(); err != nil {
//		t.Fatal(err)
//	}
package ferrytest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ferrykit/ferry/internal/security"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Cluster is a Kafka cluster to test against.
type Cluster struct {
	// Fake is the embedded cluster, for fault injection (ControlKey…); nil
	// when the cluster is external.
	Fake       *kfake.Cluster
	brokers    []string
	clientOpts []kgo.Opt // how to reach the cluster: TLS, SASL
	client     *kgo.Client
	admin      *kadm.Client
}

// Start returns the cluster named by FERRY_BROKERS (reached with the TLS and
// SASL settings of the FERRY_TLS* and FERRY_SASL* variables), or starts an
// embedded one with the given kfake options when it is unset.
func Start(opts ...kfake.Opt) (*Cluster, error) {
	if env := os.Getenv("FERRY_BROKERS"); env != "" {
		sec, err := security.FromEnv(os.Getenv)
		if err != nil {
			return nil, fmt.Errorf("ferrytest: %w", err)
		}
		return connect(strings.Split(env, ","), nil, sec.Opts())
	}
	return StartEmbedded(opts...)
}

// Connect returns the external cluster at brokers; the cluster's own
// clients reach it with clientOpts (TLS, SASL).
func Connect(brokers []string, clientOpts ...kgo.Opt) (*Cluster, error) {
	return connect(brokers, nil, clientOpts)
}

// Embedded wraps a kfake cluster started by the caller — with SASL, TLS or
// ACLs, say — whose own clients reach it with clientOpts. Close closes it.
func Embedded(fake *kfake.Cluster, clientOpts ...kgo.Opt) (*Cluster, error) {
	return connect(fake.ListenAddrs(), fake, clientOpts)
}

// StartEmbedded starts an in-process cluster on 127.0.0.1 whatever
// FERRY_BROKERS says.
func StartEmbedded(opts ...kfake.Opt) (*Cluster, error) {
	base := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.ListenFn(listenLocal),
	}
	fake, err := kfake.NewCluster(append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("ferrytest: starting embedded cluster: %w", err)
	}
	c, err := connect(fake.ListenAddrs(), fake, nil)
	if err != nil {
		fake.Close()
		return nil, err
	}
	return c, nil
}

func connect(brokers []string, fake *kfake.Cluster, clientOpts []kgo.Opt) (*Cluster, error) {
	c := &Cluster{Fake: fake, brokers: brokers, clientOpts: clientOpts}
	cl, err := c.NewClient(kgo.ProducerLinger(0), kgo.AllowAutoTopicCreation())
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.Ping(ctx); err != nil {
		cl.Close()
		return nil, fmt.Errorf("ferrytest: cluster %v unreachable: %w", brokers, err)
	}
	c.client, c.admin = cl, kadm.NewClient(cl)
	return c, nil
}

// NewClient returns a new client of the cluster — seed brokers, TLS and
// SASL set — with opts added. The caller closes it.
func (c *Cluster) NewClient(opts ...kgo.Opt) (*kgo.Client, error) {
	base := append([]kgo.Opt{kgo.SeedBrokers(c.brokers...)}, c.clientOpts...)
	return kgo.NewClient(append(base, opts...)...)
}

// External reports whether the cluster is a real one named by FERRY_BROKERS.
func (c *Cluster) External() bool { return c.Fake == nil }

// Brokers returns the seed brokers.
func (c *Cluster) Brokers() []string { return c.brokers }

// Client returns the cluster's shared producer/admin client.
func (c *Cluster) Client() *kgo.Client { return c.client }

// Admin returns an admin client.
func (c *Cluster) Admin() *kadm.Client { return c.admin }

// Close releases the cluster (stopping it when embedded).
func (c *Cluster) Close() {
	c.client.Close()
	if c.Fake != nil {
		c.Fake.Close()
	}
}

// UniqueName returns prefix followed by a random suffix, so runs against a
// shared external cluster never collide.
func UniqueName(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// CreateTopic creates a topic and waits until it is usable.
func (c *Cluster) CreateTopic(ctx context.Context, name string, partitions int32) error {
	return c.CreateTopicWithConfigs(ctx, name, partitions, nil)
}

// CreateTopicWithConfigs creates a topic with topic-level configuration
// (say, "max.message.bytes") and waits until it is usable.
func (c *Cluster) CreateTopicWithConfigs(ctx context.Context, name string, partitions int32, configs map[string]string) error {
	var cfg map[string]*string
	for k, v := range configs {
		if cfg == nil {
			cfg = make(map[string]*string)
		}
		cfg[k] = &v
	}
	resp, err := c.admin.CreateTopic(ctx, partitions, 1, cfg, name)
	if err != nil {
		return fmt.Errorf("ferrytest: create topic %q: %w", name, err)
	}
	if resp.Err != nil {
		return fmt.Errorf("ferrytest: create topic %q: %w", name, resp.Err)
	}
	for ctx.Err() == nil {
		md, err := c.admin.ListTopics(ctx, name)
		if err == nil {
			if d, ok := md[name]; ok && d.Err == nil && len(d.Partitions) == int(partitions) {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return ctx.Err()
}

// Produce writes records synchronously. Records without a topic get topic.
func (c *Cluster) Produce(ctx context.Context, topic string, recs ...*kgo.Record) error {
	for _, r := range recs {
		if r.Topic == "" {
			r.Topic = topic
		}
	}
	return c.client.ProduceSync(ctx, recs...).FirstErr()
}

// ProduceN writes n records to one partition with values "0", "1", … and
// returns them in order.
func (c *Cluster) ProduceN(ctx context.Context, topic string, partition int32, n int) ([]*kgo.Record, error) {
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Partition: partition, Value: []byte(fmt.Sprint(i))}
	}
	cl, err := c.NewClient(kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return nil, err
	}
	return recs, nil
}

// Committed returns the group's committed offsets for a topic (partitions
// without a commit are absent).
func (c *Cluster) Committed(ctx context.Context, group, topic string) (map[int32]int64, error) {
	resp, err := c.admin.FetchOffsets(ctx, group)
	if err != nil {
		return nil, err
	}
	out := make(map[int32]int64)
	for p, o := range resp[topic] {
		if o.Err != nil {
			return nil, o.Err
		}
		if o.At >= 0 {
			out[p] = o.At
		}
	}
	return out, nil
}

// CommittedMetadata returns the metadata committed for one partition.
func (c *Cluster) CommittedMetadata(ctx context.Context, group, topic string, partition int32) (string, error) {
	resp, err := c.admin.FetchOffsets(ctx, group)
	if err != nil {
		return "", err
	}
	o, ok := resp.Lookup(topic, partition)
	if !ok {
		return "", errors.New("ferrytest: no committed offset")
	}
	return o.Metadata, o.Err
}

// WaitFor polls cond every 20 ms until it returns true or ctx ends.
func WaitFor(ctx context.Context, cond func() bool) error {
	for {
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
