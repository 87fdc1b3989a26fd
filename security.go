package ferry

import (
	"context"
	"crypto/tls"
	"fmt"

	"github.com/ferrykit/ferry/internal/engine"
	"github.com/ferrykit/ferry/internal/security"
	"github.com/twmb/franz-go/pkg/sasl"
)

// Errors Run returns when the brokers turn the app away (T2, T3). They come
// at once, without retries: retrying cannot fix a wrong password.
var (
	// ErrAuthentication: SASL authentication failed (wrong user or
	// password, a mechanism the brokers do not enable, or SASL missing
	// where the brokers require it). The error names the mechanism.
	ErrAuthentication = engine.ErrAuthentication
	// ErrTLS: the TLS handshake failed (a broker certificate signed by a
	// CA the app does not trust, a name mismatch, a client certificate the
	// broker refuses, or TLS on one side only).
	ErrTLS = engine.ErrTLS
	// ErrNotAuthorized: an ACL denies the app a routed topic, a
	// dead-letter topic, the consumer group or the transactional id; the
	// error names it. Nothing was committed.
	ErrNotAuthorized = engine.ErrNotAuthorized
)

// TLS connects to the brokers over TLS with cfg (cfg is cloned; nil turns
// TLS off). Default: what the FERRY_TLS, FERRY_TLS_CA, FERRY_TLS_CERT,
// FERRY_TLS_KEY and FERRY_TLS_SERVER_NAME environment variables say —
// plaintext when none is set. TLS applies to every client ferry makes: the
// group consumers and the dead-letter and transactional producers. A
// kgo.DialTLSConfig passed through ClientOptions wins over it.
func TLS(cfg *tls.Config) Option {
	return func(c *config) {
		c.tls, c.tlsErr = nil, nil
		if cfg != nil {
			c.tls = cfg.Clone()
		}
	}
}

// TLSFiles connects over TLS, trusting the CAs in the PEM file caFile (the
// system's roots when empty) and, when certFile and keyFile are set,
// presenting that client certificate to brokers that ask for one. The
// files are read by New; a file that cannot be read or parsed is a
// configuration error. See TLS for the default.
func TLSFiles(caFile, certFile, keyFile string) Option {
	return func(c *config) {
		c.tls, c.tlsErr = security.TLSFiles(caFile, certFile, keyFile)
	}
}

// SASL authenticates every connection with a franz-go SASL mechanism (from
// github.com/twmb/franz-go/pkg/sasl/...: plain, scram, oauth, aws); nil
// turns authentication off. Default: what FERRY_SASL_MECHANISM,
// FERRY_SASL_USERNAME and FERRY_SASL_PASSWORD (FERRY_SASL_TOKEN for
// OAUTHBEARER) say — none when unset. SASLPlain, SASLScramSHA256,
// SASLScramSHA512 and SASLOAuthBearer are shorthands. It applies to every
// client ferry makes; SASL is normally combined with TLS, since PLAIN sends
// the password as it is.
func SASL(m sasl.Mechanism) Option {
	return func(c *config) { c.sasl, c.saslErr = m, nil }
}

// SASLPlain authenticates with SASL/PLAIN. See SASL.
func SASLPlain(user, password string) Option { return saslNamed("PLAIN", user, password) }

// SASLScramSHA256 authenticates with SASL/SCRAM-SHA-256. See SASL.
func SASLScramSHA256(user, password string) Option {
	return saslNamed("SCRAM-SHA-256", user, password)
}

// SASLScramSHA512 authenticates with SASL/SCRAM-SHA-512. See SASL.
func SASLScramSHA512(user, password string) Option {
	return saslNamed("SCRAM-SHA-512", user, password)
}

// SASLOAuthBearer authenticates with SASL/OAUTHBEARER. token is called for
// each new connection and each re-authentication the brokers ask for, so it
// may fetch or refresh a token; a nil token is a configuration error. See
// SASL.
func SASLOAuthBearer(token func(ctx context.Context) (string, error)) Option {
	return func(c *config) {
		if token == nil {
			c.sasl, c.saslErr = nil, fmt.Errorf("SASLOAuthBearer: nil token function")
			return
		}
		c.sasl, c.saslErr = security.OAuthBearer(token), nil
	}
}

func saslNamed(name, user, password string) Option {
	return func(c *config) { c.sasl, c.saslErr = security.Mechanism(name, user, password) }
}
