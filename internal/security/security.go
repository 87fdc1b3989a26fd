// Package security turns TLS and SASL settings — from options, command-line
// flags or the environment — into franz-go client options. Every client ferry
// builds (group consumers, producers, the test cluster's clients, the ferry
// command's clients) takes them from here, so all connect the same way.
package security

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// The environment variables read by FromEnv.
const (
	EnvTLS           = "FERRY_TLS"             // "1"/"true"/"on": TLS with the system's roots
	EnvTLSCA         = "FERRY_TLS_CA"          // PEM file of the CA(s) to trust; implies TLS
	EnvTLSCert       = "FERRY_TLS_CERT"        // PEM client certificate (with FERRY_TLS_KEY); implies TLS
	EnvTLSKey        = "FERRY_TLS_KEY"         // PEM key of the client certificate
	EnvTLSServerName = "FERRY_TLS_SERVER_NAME" // the name the brokers' certificates are checked against
	EnvSASLMechanism = "FERRY_SASL_MECHANISM"  // PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER
	EnvSASLUsername  = "FERRY_SASL_USERNAME"
	EnvSASLPassword  = "FERRY_SASL_PASSWORD"
	EnvSASLToken     = "FERRY_SASL_TOKEN" // OAUTHBEARER: a token, used as it is
)

// Vars lists every variable FromEnv reads, for commands that pass them on
// to processes they start.
var Vars = []string{EnvTLS, EnvTLSCA, EnvTLSCert, EnvTLSKey, EnvTLSServerName,
	EnvSASLMechanism, EnvSASLUsername, EnvSASLPassword, EnvSASLToken}

// Settings is how clients reach the brokers. The zero value is plaintext
// without authentication.
type Settings struct {
	TLS  *tls.Config    // nil: plaintext
	SASL sasl.Mechanism // nil: no authentication
}

// Opts returns the franz-go options for s.
func (s Settings) Opts() []kgo.Opt {
	var opts []kgo.Opt
	if s.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(s.TLS.Clone()))
	}
	if s.SASL != nil {
		opts = append(opts, kgo.SASL(s.SASL))
	}
	return opts
}

// FromEnv reads the settings from the environment variables above through
// getenv (os.Getenv, or a lookup that puts command-line flags first).
func FromEnv(getenv func(string) string) (Settings, error) {
	var s Settings
	var errTLS, errSASL error
	s.TLS, errTLS = TLSFromEnv(getenv)
	s.SASL, errSASL = SASLFromEnv(getenv)
	return s, errors.Join(errTLS, errSASL)
}

// TLSFromEnv returns the TLS configuration the FERRY_TLS* variables ask for,
// or nil when they ask for none.
func TLSFromEnv(getenv func(string) string) (*tls.Config, error) {
	ca, cert, key := getenv(EnvTLSCA), getenv(EnvTLSCert), getenv(EnvTLSKey)
	on := getenv(EnvTLS)
	switch strings.ToLower(on) {
	case "", "0", "false", "off", "no":
		on = ""
	case "1", "true", "on", "yes":
	default:
		return nil, fmt.Errorf("%s=%q: want on or off", EnvTLS, on)
	}
	if on == "" && ca == "" && cert == "" && key == "" {
		return nil, nil
	}
	cfg, err := TLSFiles(ca, cert, key)
	if err != nil {
		return nil, err
	}
	cfg.ServerName = getenv(EnvTLSServerName)
	return cfg, nil
}

// SASLFromEnv returns the SASL mechanism the FERRY_SASL* variables ask for,
// or nil when they ask for none.
func SASLFromEnv(getenv func(string) string) (sasl.Mechanism, error) {
	name := getenv(EnvSASLMechanism)
	switch {
	case name == "":
		return nil, nil
	case strings.EqualFold(name, "OAUTHBEARER"):
		token := getenv(EnvSASLToken)
		if token == "" {
			return nil, fmt.Errorf("%s=OAUTHBEARER needs %s", EnvSASLMechanism, EnvSASLToken)
		}
		return OAuthBearer(func(context.Context) (string, error) { return token, nil }), nil
	}
	m, err := Mechanism(name, getenv(EnvSASLUsername), getenv(EnvSASLPassword))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", EnvSASLMechanism, err)
	}
	return m, nil
}

// TLSFiles builds a TLS configuration from PEM files: caFile, if set, holds
// the CAs to trust instead of the system's; certFile and keyFile, set
// together, hold the client's certificate for brokers that ask for one.
func TLSFiles(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("TLS CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS CA %s: no PEM certificate in it", caFile)
		}
		cfg.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("TLS client certificate: need both a certificate and a key file")
	}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("TLS client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// Mechanism returns the SASL mechanism of that name (PLAIN, SCRAM-SHA-256 or
// SCRAM-SHA-512) for a user and password.
func Mechanism(name, user, password string) (sasl.Mechanism, error) {
	if user == "" {
		return nil, fmt.Errorf("SASL %s: empty user name", name)
	}
	switch strings.ToUpper(name) {
	case "PLAIN":
		return plain.Auth{User: user, Pass: password}.AsMechanism(), nil
	case "SCRAM-SHA-256":
		return scram.Auth{User: user, Pass: password}.AsSha256Mechanism(), nil
	case "SCRAM-SHA-512":
		return scram.Auth{User: user, Pass: password}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("unknown SASL mechanism %q: want PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER", name)
}

// OAuthBearer returns the OAUTHBEARER mechanism; token is called for every
// connection and re-authentication, so it may refresh the token.
func OAuthBearer(token func(context.Context) (string, error)) sasl.Mechanism {
	return oauth.Oauth(func(ctx context.Context) (oauth.Auth, error) {
		t, err := token(ctx)
		return oauth.Auth{Token: t}, err
	})
}
