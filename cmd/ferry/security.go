package main

import (
	"flag"
	"os"
	"strconv"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/internal/security"
)

// securityFlags are the TLS and SASL flags of the commands that reach a
// cluster. Each defaults to its environment variable (FERRY_TLS_CA for
// -tls-ca, …), which a flag given on the command line replaces.
type securityFlags struct {
	tls  *bool
	vals map[string]*string // environment variable → flag value
}

func addSecurityFlags(fs *flag.FlagSet) *securityFlags {
	f := &securityFlags{vals: map[string]*string{}}
	f.tls = fs.Bool("tls", false, "connect over TLS with the system's CAs ($FERRY_TLS); -tls-ca and -tls-cert imply it")
	str := func(name, env, usage string) {
		f.vals[env] = fs.String(name, "", usage+" ($"+env+")")
	}
	str("tls-ca", security.EnvTLSCA, "PEM file of the CAs to trust")
	str("tls-cert", security.EnvTLSCert, "PEM client certificate, for brokers that ask for one (with -tls-key)")
	str("tls-key", security.EnvTLSKey, "PEM key of the client certificate")
	str("tls-server-name", security.EnvTLSServerName, "name to check the brokers' certificates against")
	str("sasl-mechanism", security.EnvSASLMechanism, "SASL mechanism: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER")
	str("sasl-username", security.EnvSASLUsername, "SASL user")
	str("sasl-password", security.EnvSASLPassword, "SASL password (prefer the environment: flags show in ps)")
	str("sasl-token", security.EnvSASLToken, "OAUTHBEARER token")
	return f
}

// getenv reads a setting: the flag when given, else the environment.
func (f *securityFlags) getenv(key string) string {
	if key == security.EnvTLS && *f.tls {
		return strconv.FormatBool(true)
	}
	if v, ok := f.vals[key]; ok && *v != "" {
		return *v
	}
	return os.Getenv(key)
}

// settings returns how to reach the cluster.
func (f *securityFlags) settings() (security.Settings, error) {
	return security.FromEnv(f.getenv)
}

// options returns the ferry options of the settings.
func (f *securityFlags) options() ([]ferry.Option, error) {
	s, err := f.settings()
	if err != nil {
		return nil, err
	}
	return []ferry.Option{ferry.TLS(s.TLS), ferry.SASL(s.SASL)}, nil
}

// env returns the settings as environment variables ("KEY=value"), for the
// processes a command starts.
func (f *securityFlags) env() []string {
	var env []string
	for _, key := range security.Vars {
		if v := f.getenv(key); v != "" {
			env = append(env, key+"="+v)
		}
	}
	return env
}
