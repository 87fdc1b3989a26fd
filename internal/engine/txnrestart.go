package engine

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/ferrykit/ferry/offsets"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// When a transaction cannot be ended — the broker is away for longer than
// franz-go's retries, or answers with a retriable error that outlives them —
// its outcome is unknown: the commit may have reached the broker, or the
// transaction may still be open there. Beginning the next one on the same
// producer epoch could let its records join the open transaction, and
// rewinding to the offsets the member knew could process a committed round
// again. So the member starts over as a restarted member would, without
// leaving the group:
//
//  1. the open transaction is aborted on the client side (franz-go's
//     TryAbort retry), and the producer is initialised again
//     (InitProducerID): the broker bumps the epoch, which aborts whatever is
//     still open on its side and fences the old epoch;
//  2. the group's committed offsets are read from the broker (waiting for
//     no pending transactional commit), and every owned partition resumes
//     there — past the round if it did commit, at its start if it did not.
//
// Each step is retried every second while the broker is away (a closed or
// refused connection, a timeout) or answers with an error that may clear,
// and the wait is logged. A failure that cannot clear ends the group (Run
// returns it): a refusal (the member was fenced by another instance, or is
// not authorised), a TLS certificate that fails verification, or a
// producer id failure franz-go keeps for the client's life (a non-retriable
// answer to InitProducerID such as UNKNOWN_SERVER_ERROR, which every later
// ProducerID call returns without asking the broker again).

// txnFatal reports whether a transactional failure leaves the producer
// unusable: fenced by another instance, refused by the broker for good, or
// closed. Anything else — a broker that cannot be reached, a request that
// outlived its retries or its deadline, a retriable answer — only leaves the
// transaction's end unconfirmed.
func txnFatal(err error) bool {
	if errors.Is(err, kgo.ErrClientClosed) {
		return true
	}
	if ke, ok := errors.AsType[*kerr.Error](err); ok {
		return !ke.Retriable && ke != kerr.UnknownServerError && ke != kerr.TransactionAbortable
	}
	return false
}

// txnRestartTimeout bounds one attempt at starting transactions again.
const txnRestartTimeout = 30 * time.Second

// restartTxns starts a fresh transactional session after a transaction
// could not be ended or begun (what, cause), retrying every second until it
// succeeds or ctx ends. It returns an error only when the member must stop.
func (g *group) restartTxns(ctx context.Context, what string, cause error) error {
	g.log.Error(what, "transactional_id", g.cfg.Txn.ID, "err", cause)
	began := time.Now()
	for {
		err := g.restartTxnsOnce(ctx)
		if ctx.Err() != nil {
			return nil // shutting down: the broker aborts what is left open
		}
		if err == nil {
			g.log.Info("ferry: transactions resumed from the committed offsets", "after", time.Since(began).Round(time.Millisecond))
			return nil
		}
		if denied := g.notAuthorized("", err); denied != nil {
			return denied // T3
		}
		if txnFatal(err) || errors.Is(err, errProducerIDKept) {
			return fmt.Errorf("ferry: group %q: starting transactions again: %w", g.cfg.Name, err)
		}
		if certificateRefused(err) { // T2: a broker restarting cannot cause this
			return fmt.Errorf("ferry: group %q: starting transactions again: %w: %w", g.cfg.Name, ErrTLS, err)
		}
		if ok, held := g.fetchLogs.allow("\x00transactions", time.Now()); ok {
			g.log.Warn("ferry: cannot start transactions again yet; retrying", "err", err, "repeats_not_logged", held)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-g.clock.After(time.Second):
		}
	}
}

// restartTxnsOnce makes one attempt at each step of a restart.
func (g *group) restartTxnsOnce(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, txnRestartTimeout)
	defer cancel()
	if err := g.cl.AbortBufferedRecords(ctx); err != nil {
		return err
	}
	// franz-go keeps the transaction open on its side after a failed end
	// and marks its producer id for reloading; this abort clears the
	// former, and ProducerID reloads the id now (InitProducerID), before
	// anything is produced again.
	if err := g.cl.EndTransaction(ctx, kgo.TryAbort); err != nil {
		if _, _, perr := g.cl.ProducerID(ctx); producerIDKept(perr) {
			return fmt.Errorf("%w: %w", errProducerIDKept, perr)
		}
		return err
	}
	if _, _, err := g.cl.ProducerID(ctx); err != nil {
		if producerIDKept(err) {
			return fmt.Errorf("%w: %w", errProducerIDKept, err)
		}
		return err
	}
	return g.resumeFromCommitted(ctx)
}

// certificateRefused reports whether err is a TLS certificate that failed
// verification, on either side: unlike a closed connection, which a broker
// restarting causes too, retrying does not clear it.
func certificateRefused(err error) bool {
	var verify *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var alert tls.AlertError
	return errors.As(err, &verify) || errors.As(err, &unknownCA) || errors.As(err, &hostname) ||
		errors.As(err, &invalid) || errors.As(err, &alert)
}

// errProducerIDKept: the producer id failed with an answer franz-go keeps
// for the client's life; no retry can start transactions on this client.
var errProducerIDKept = errors.New("the producer id cannot be initialised again: franz-go keeps the broker's answer for the client's life")

// producerIDKept reports whether err, from ProducerID after an abort that
// recovers what franz-go can recover, is a failure franz-go keeps: a
// non-retriable Kafka answer to InitProducerID (UNKNOWN_SERVER_ERROR, say)
// is stored and returned by every later call, without asking the broker
// again. Transport failures and retriable answers are not stored (the next
// call asks again), and the failures franz-go's abort recovers from (an
// unknown producer id, its epoch or mapping no longer valid, an abortable
// transaction) are not counted: the next attempt's abort reloads the id.
func producerIDKept(err error) bool {
	ke, ok := errors.AsType[*kerr.Error](err)
	if !ok || ke.Retriable {
		return false
	}
	switch ke {
	case kerr.UnknownProducerID, kerr.InvalidProducerIDMapping, kerr.InvalidProducerEpoch, kerr.TransactionAbortable:
		return false
	}
	return true
}

// resumeFromCommitted reads the group's committed offsets from the broker
// and moves every owned partition there: its committed mark and its fetch
// position (which also drops what franz-go fetched past it). A partition
// with nothing committed goes back to the first offset it was given.
func (g *group) resumeFromCommitted(ctx context.Context) error {
	committed, err := kadm.NewClient(g.cl).FetchOffsets(kadm.RequireStable(ctx), g.cfg.Name)
	if err != nil {
		return err
	}
	set := make(map[string]map[int32]kgo.EpochOffset)
	g.mu.RLock()
	parts := make([]*Partition, 0, len(g.parts))
	for _, p := range g.parts {
		parts = append(parts, p)
	}
	g.mu.RUnlock()
	for _, p := range parts {
		if !p.Owned() {
			continue
		}
		o, found := committed.Lookup(p.topic.Name, p.id)
		if found && o.Err != nil {
			return fmt.Errorf("committed offset of %s[%d]: %w", p.topic.Name, p.id, o.Err)
		}
		if found && o.At >= 0 {
			p.acknowledge(offsets.Mark{Offset: o.At, Epoch: o.LeaderEpoch, Metadata: o.Metadata})
			seekTo(set, p, kgo.EpochOffset{Epoch: o.LeaderEpoch, Offset: o.At})
		} else if to := p.retryPoint(); to.Offset >= 0 {
			seekTo(set, p, to)
		}
	}
	g.cl.SetOffsets(set)
	return nil
}

// beginFailed handles a transaction that could not begin, before any of the
// polled records was given to a consumer. franz-go's BeginTransaction gets
// over passing failures itself: when re-initialising the producer id meets
// a retriable answer or an unreachable broker, it flags the id for another
// try and begins. So what it returns is one of:
//
//   - a Kafka error: the producer id failed with an answer franz-go keeps
//     for the client's life (fenced by another instance, an epoch the broker
//     no longer accepts, not authorised, or another answer it cannot recover
//     from). No retry can begin a transaction on this client: the member
//     stops, as when the transaction could not end for that reason;
//   - franz-go's own state: a transaction it still holds open because an
//     earlier end was not confirmed, or a producer id failure that is not a
//     Kafka answer. The member starts transactions again as after an end that
//     could not be confirmed (restartTxns): it aborts what is open,
//     initialises the producer id again and resumes from the committed
//     offsets, every second until the broker answers.
//
// The polled records go back to be fetched again either way.
func (g *group) beginFailed(ctx context.Context, fetches kgo.Fetches, err error) error {
	if ctx.Err() != nil {
		return nil // shutting down
	}
	if _, kafka := errors.AsType[*kerr.Error](err); kafka || errors.Is(err, kgo.ErrClientClosed) {
		return fmt.Errorf("ferry: group %q: begin transaction: %w", g.cfg.Name, err)
	}
	set := make(map[string]map[int32]kgo.EpochOffset)
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		if len(fp.Records) == 0 {
			return
		}
		if set[fp.Topic] == nil {
			set[fp.Topic] = make(map[int32]kgo.EpochOffset)
		}
		first := fp.Records[0]
		set[fp.Topic][fp.Partition] = kgo.EpochOffset{Epoch: first.LeaderEpoch, Offset: first.Offset}
	})
	g.cl.SetOffsets(set)
	return g.restartTxns(ctx, "ferry: cannot begin a transaction; aborting what is open and resuming from the committed offsets once the broker answers", err)
}
