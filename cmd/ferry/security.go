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

// securityFlagList names the string flags: flag, environment variable, usage.
var securityFlagList = [][3]string{
	{"tls-ca", security.EnvTLSCA, "PEM file of the CAs to trust"},
	{"tls-cert", security.EnvTLSCert, "PEM client certificate, for brokers that ask for one (with -tls-key)"},
	{"tls-key", security.EnvTLSKey, "PEM key of the client certificate"},
	{"tls-server-name", security.EnvTLSServerName, "name to check the brokers' certificates against"},
	{"sasl-mechanism", security.EnvSASLMechanism, "SASL mechanism: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER"},
	{"sasl-username", security.EnvSASLUsername, "SASL user"},
	{"sasl-password", security.EnvSASLPassword, "SASL password (prefer the environment: flags show in ps)"},
	{"sasl-token", security.EnvSASLToken, "OAUTHBEARER token"},
}

func addSecurityFlags(fs *flag.FlagSet) *securityFlags {
	f := &securityFlags{tls: new(bool), vals: map[string]*string{}}
	for _, d := range securityFlagList {
		f.vals[d[1]] = new(string)
	}
	f.bind(fs)
	return f
}

// bind defines the flags in fs too, sharing their values: a command and its
// subcommands take them on either side of the subcommand's name.
func (f *securityFlags) bind(fs *flag.FlagSet) {
	fs.BoolVar(f.tls, "tls", false, "connect over TLS with the system's CAs ($FERRY_TLS); -tls-ca and -tls-cert imply it")
	for _, d := range securityFlagList {
		fs.StringVar(f.vals[d[1]], d[0], "", d[2]+" ($"+d[1]+")")
	}
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
