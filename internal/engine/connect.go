package engine

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
)

// Sentinel errors of connecting, which the ferry package re-exports.
var (
	// ErrUnreachable: no broker answered within the connect timeout (O1).
	ErrUnreachable = errors.New("ferry: brokers unreachable")
	// ErrAuthentication: the brokers refused the client's SASL
	// authentication (T2).
	ErrAuthentication = errors.New("ferry: authentication failed")
	// ErrTLS: the TLS handshake with the brokers failed (T2).
	ErrTLS = errors.New("ferry: TLS handshake failed")
	// ErrNotAuthorized: an ACL denies the client a topic, the group or
	// the transactional id (T3).
	ErrNotAuthorized = errors.New("ferry: not authorized")
)

// connect waits for a first broker answer (O1) — retrying refused
// connections, as a broker may start after its app — and fails at once
// when the brokers turn the client away (T2) or an ACL denies it the group
// or a topic (T3). It names routed topics that do not exist (B7).
func (g *group) connect(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, g.cfg.ConnectTimeout)
	defer cancel()
	if err := g.ping(pctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	return g.checkAccess(pctx)
}

// ping returns once a broker answered, with an error wrapping ErrUnreachable
// when none did before ctx ended, or at once with ErrAuthentication or ErrTLS.
func (g *group) ping(ctx context.Context) error {
	began := time.Now()
	wait := 100 * time.Millisecond
	var last error
	attempts := 0
	for ctx.Err() == nil {
		attempts++
		closedBefore := g.saslClosed.n.Load()
		err := g.pingOnce(ctx)
		if err == nil {
			return nil
		}
		if g.saslClosed.n.Load() > closedBefore {
			err = fmt.Errorf("the broker closed the connection in answer to SASL authentication: %w", errSASLClosed)
		}
		if refused := turnedAway(g.cl, g.cfg.Brokers, err); refused != nil {
			return refused
		}
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			last = err
		}
		if attempts == 1 {
			g.log.Warn("ferry: no broker answers yet; retrying", "brokers", g.cfg.Brokers,
				"for", g.cfg.ConnectTimeout, "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
	if last == nil {
		last = ctx.Err()
	}
	return fmt.Errorf("%w: no answer from %v in %s (connect timeout %s, %d attempts): %w",
		ErrUnreachable, g.cfg.Brokers, time.Since(began).Round(10*time.Millisecond), g.cfg.ConnectTimeout, attempts, last)
}

// pingOnce asks the brokers for metadata. kgo can keep waiting on a broker
// that accepts connections but never answers past the context; ferry's
// bound holds regardless.
func (g *group) pingOnce(ctx context.Context) error {
	pinged := make(chan error, 1)
	go func() { pinged <- g.cl.Ping(ctx) }()
	select {
	case err := <-pinged:
		return err
	case <-ctx.Done():
		g.cl.Close() // ends the ping
		<-pinged
		return ctx.Err()
	}
}

// turnedAway classifies an error of a connection attempt that retrying
// cannot fix: SASL authentication (ErrAuthentication, naming the
// mechanism) or TLS (ErrTLS). It returns nil for any other error.
func turnedAway(cl *kgo.Client, brokers []string, err error) error {
	tlsOn := false
	if cfg, _ := cl.OptValue(kgo.DialTLSConfig).(*tls.Config); cfg != nil {
		tlsOn = true
	}
	var mechs []string
	ms, _ := cl.OptValue(kgo.SASL).([]sasl.Mechanism)
	for _, m := range ms {
		mechs = append(mechs, m.Name())
	}
	saslDesc := "SASL " + strings.Join(mechs, "/")
	if len(mechs) == 0 {
		saslDesc = "no SASL configured"
	}
	tlsDesc := "TLS"
	if !tlsOn {
		tlsDesc = "plaintext (no TLS configured)"
	}
	// kgo's ErrFirstReadEOF (a broker closed a fresh connection) guesses
	// why in its message; the guess counts only when the client's own
	// settings fit it — otherwise the connection is retried.
	var firstEOF *kgo.ErrFirstReadEOF
	closedFor := func(guess string, fits bool) bool {
		return errors.As(err, &firstEOF) && strings.Contains(err.Error(), guess) && fits
	}
	var verify *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var header tls.RecordHeaderError
	var alert tls.AlertError
	var remote *net.OpError
	switch {
	case errors.Is(err, kerr.SaslAuthenticationFailed), errors.Is(err, errSASLClosed),
		errors.Is(err, kerr.UnsupportedSaslMechanism),
		errors.Is(err, kerr.IllegalSaslState),
		closedFor("is SASL missing", len(mechs) == 0):
		return fmt.Errorf("%w: %s to %v: %w", ErrAuthentication, saslDesc, brokers, err)
	case errors.As(err, &verify), errors.As(err, &unknownCA), errors.As(err, &hostname),
		errors.As(err, &invalid), errors.As(err, &header), errors.As(err, &alert),
		closedFor("is TLS misconfigured", tlsOn), closedFor("is TLS missing", !tlsOn),
		// crypto/tls's alerts from the broker (its type is unexported):
		errors.As(err, &remote) && remote.Op == "remote error",
		// kgo's only sign of plaintext spoken to a TLS listener:
		strings.Contains(err.Error(), "plaintext connection speaking to a tls endpoint"):
		return fmt.Errorf("%w: %s to %v: %w", ErrTLS, tlsDesc, brokers, err)
	}
	return nil
}

// errSASLClosed: a broker closed the connection in answer to the client's
// SASL authentication — how some brokers, and Kafka before the
// SaslAuthenticate request, turn credentials down.
var errSASLClosed = errors.New("credentials refused")

// saslClosings counts connections closed by a broker in answer to SASL
// authentication (a kgo hook).
type saslClosings struct{ n atomic.Int64 }

func (h *saslClosings) OnBrokerE2E(_ kgo.BrokerMetadata, key int16, e2e kgo.BrokerE2E) {
	if (key == int16(kmsg.SASLAuthenticate) || key == int16(kmsg.SASLHandshake)) &&
		(errors.Is(e2e.ReadErr, io.EOF) || errors.Is(e2e.ReadErr, io.ErrUnexpectedEOF)) {
		h.n.Add(1)
	}
}

// notAuthorized wraps an authorization error from the brokers in
// ErrNotAuthorized, naming the resource (topic, when known, for a topic);
// it returns nil for other errors.
func (g *group) notAuthorized(topic string, err error) error {
	group := g.cfg.Name
	switch {
	case errors.Is(err, kerr.GroupAuthorizationFailed):
		return fmt.Errorf("%w: consumer group %q: %w", ErrNotAuthorized, group, err)
	case errors.Is(err, kerr.TopicAuthorizationFailed):
		if topic == "" {
			return fmt.Errorf("%w: a topic of group %q: %w", ErrNotAuthorized, group, err)
		}
		return fmt.Errorf("%w: topic %q: %w", ErrNotAuthorized, topic, err)
	case errors.Is(err, kerr.TransactionalIDAuthorizationFailed) && g.cfg.Txn != nil:
		return fmt.Errorf("%w: transactional id %q: %w", ErrNotAuthorized, g.cfg.Txn.ID, err)
	case errors.Is(err, kerr.ClusterAuthorizationFailed):
		return fmt.Errorf("%w: cluster action for group %q: %w", ErrNotAuthorized, group, err)
	}
	return nil
}

// checkAccess fails when an ACL denies the group or a routed or dead-letter
// topic (T3), and logs routed topics that do not exist (B7).
func (g *group) checkAccess(ctx context.Context) error {
	adm := kadm.NewClient(g.cl)
	names := make([]string, 0, len(g.cfg.Topics))
	dead := make(map[string]bool)
	for name, t := range g.cfg.Topics {
		names = append(names, name)
		if t.DeadLetterTopic != "" && !dead[t.DeadLetterTopic] {
			dead[t.DeadLetterTopic] = true
			names = append(names, t.DeadLetterTopic)
		}
	}
	details, err := adm.ListTopics(ctx, names...)
	if err != nil {
		if g.notAuthorized("", err) != nil {
			return g.deniedTopic(ctx, adm, names, dead, err)
		}
		g.log.Warn("ferry: cannot check routed topics", "err", err)
		return nil
	}
	for _, name := range names {
		d, ok := details[name]
		if ok {
			if denied := g.notAuthorized(name, d.Err); denied != nil {
				if dead[name] {
					return fmt.Errorf("dead-letter topic: %w", denied)
				}
				return denied
			}
		}
		if ok && !errors.Is(d.Err, kerr.UnknownTopicOrPartition) && len(d.Partitions) > 0 {
			continue
		}
		if dead[name] {
			g.log.Error("ferry: dead-letter topic does not exist; failed messages stay unmarked and are retried until it is created", "dead_letter_topic", name)
		} else {
			g.log.Error("ferry: routed topic does not exist; its consumer starts once it is created", "topic", name)
		}
	}
	// Describing the group needs the group's DESCRIBE right, which its
	// READ right (what a consumer needs) implies.
	groups, err := adm.DescribeGroups(ctx, g.cfg.Name)
	if err == nil {
		if d, ok := groups[g.cfg.Name]; ok {
			err = d.Err
		}
	}
	if denied := g.notAuthorized("", err); denied != nil {
		return denied
	}
	return nil
}

// deniedTopic names the first topic of names the brokers deny, asking for
// each alone; err is the denial of all of them together.
func (g *group) deniedTopic(ctx context.Context, adm *kadm.Client, names []string, dead map[string]bool, err error) error {
	for _, name := range names {
		d, lerr := adm.ListTopics(ctx, name)
		if lerr == nil {
			lerr = d[name].Err
		}
		if denied := g.notAuthorized(name, lerr); denied != nil {
			if dead[name] {
				return fmt.Errorf("dead-letter topic: %w", denied)
			}
			return denied
		}
	}
	return g.notAuthorized("", err)
}
