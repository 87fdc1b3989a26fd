package engine

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// T2, O1: which connection errors end Run at once (authentication, TLS) and
// which are retried until the connect timeout (everything else).
func TestTurnedAway(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	scram512 := kgo.SASL(scram.Auth{User: "u", Pass: "p"}.AsSha512Mechanism())
	withTLS := kgo.DialTLSConfig(&tls.Config{})
	for _, tt := range []struct {
		name string
		opts []kgo.Opt
		err  error
		want error  // nil: retried
		says string // in the message
	}{
		{name: "wrong password", opts: []kgo.Opt{scram512, withTLS}, err: fmt.Errorf("sasl: %w", kerr.SaslAuthenticationFailed),
			want: ErrAuthentication, says: "SASL SCRAM-SHA-512"},
		{name: "mechanism not enabled", opts: []kgo.Opt{scram512}, err: kerr.UnsupportedSaslMechanism, want: ErrAuthentication},
		{name: "connection closed in answer to SASL", opts: []kgo.Opt{scram512}, err: errSASLClosed, want: ErrAuthentication},
		{name: "unknown CA", opts: []kgo.Opt{withTLS}, err: &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}},
			want: ErrTLS, says: "TLS to"},
		{name: "TLS to a plaintext listener", opts: []kgo.Opt{withTLS}, err: tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"},
			want: ErrTLS},
		{name: "plaintext to a TLS listener", err: errors.New("invalid large response size 352518912 > limit 104857600; the first three bytes received appear to be a tls alert record for TLS v1.2; is this a plaintext connection speaking to a tls endpoint?"),
			want: ErrTLS, says: "no TLS configured"},
		{name: "client certificate refused", opts: []kgo.Opt{withTLS},
			err: &net.OpError{Op: "remote error", Err: errors.New("tls: unknown certificate authority")}, want: ErrTLS},
		{name: "closed after the dial, with TLS", opts: []kgo.Opt{withTLS}, err: &kgo.ErrFirstReadEOF{}, want: ErrTLS},
		{name: "closed after the dial, without TLS", err: &kgo.ErrFirstReadEOF{}},
		{name: "refused", opts: []kgo.Opt{scram512, withTLS}, err: refused},
		{name: "closed mid-way", opts: []kgo.Opt{scram512}, err: io.EOF},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cl, err := kgo.NewClient(append(tt.opts, kgo.SeedBrokers("127.0.0.1:1"))...)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			got := turnedAway(cl, []string{"127.0.0.1:1"}, tt.err)
			if tt.want == nil {
				if got != nil {
					t.Fatalf("turnedAway = %v, want nil (retry)", got)
				}
				return
			}
			if !errors.Is(got, tt.want) || !errors.Is(got, tt.err) {
				t.Fatalf("turnedAway = %v, want it to wrap %v and the cause", got, tt.want)
			}
			if !strings.Contains(got.Error(), tt.says) {
				t.Errorf("%q does not say %q", got, tt.says)
			}
		})
	}
}
