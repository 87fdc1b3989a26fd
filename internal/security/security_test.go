package security

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// T1: the environment variables select TLS and the SASL mechanism; what
// cannot work is an error naming the variable or the file.
func TestFromEnv(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name     string
		env      map[string]string
		tls      bool
		sasl     string // mechanism name, "" for none
		checkErr string // in the error; "" for none
	}{
		{name: "nothing set: plaintext", env: nil},
		{name: "FERRY_TLS=on", env: map[string]string{EnvTLS: "on"}, tls: true},
		{name: "FERRY_TLS=false", env: map[string]string{EnvTLS: "false"}},
		{name: "FERRY_TLS=maybe", env: map[string]string{EnvTLS: "maybe"}, checkErr: "FERRY_TLS"},
		{name: "missing CA file", env: map[string]string{EnvTLSCA: filepath.Join(dir, "nope.pem")}, checkErr: "nope.pem"},
		{name: "CA file without a certificate", env: map[string]string{EnvTLSCA: notPEM}, checkErr: "no PEM certificate"},
		{name: "certificate without key", env: map[string]string{EnvTLSCert: notPEM}, checkErr: "both a certificate and a key"},
		{name: "SCRAM-SHA-512", env: map[string]string{EnvSASLMechanism: "SCRAM-SHA-512", EnvSASLUsername: "u", EnvSASLPassword: "p"}, sasl: "SCRAM-SHA-512"},
		{name: "scram-sha-256, any case", env: map[string]string{EnvSASLMechanism: "scram-sha-256", EnvSASLUsername: "u"}, sasl: "SCRAM-SHA-256"},
		{name: "PLAIN with TLS", env: map[string]string{EnvSASLMechanism: "PLAIN", EnvSASLUsername: "u", EnvTLS: "1"}, sasl: "PLAIN", tls: true},
		{name: "OAUTHBEARER", env: map[string]string{EnvSASLMechanism: "OAUTHBEARER", EnvSASLToken: "tok"}, sasl: "OAUTHBEARER"},
		{name: "OAUTHBEARER without token", env: map[string]string{EnvSASLMechanism: "OAUTHBEARER"}, checkErr: EnvSASLToken},
		{name: "no user", env: map[string]string{EnvSASLMechanism: "PLAIN"}, checkErr: "empty user name"},
		{name: "unknown mechanism", env: map[string]string{EnvSASLMechanism: "GSSAPI", EnvSASLUsername: "u"}, checkErr: `unknown SASL mechanism "GSSAPI"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := FromEnv(func(k string) string { return tt.env[k] })
			if tt.checkErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.checkErr) {
					t.Fatalf("error %v, want one saying %q", err, tt.checkErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (s.TLS != nil) != tt.tls {
				t.Errorf("TLS on = %v, want %v", s.TLS != nil, tt.tls)
			}
			name := ""
			if s.SASL != nil {
				name = s.SASL.Name()
			}
			if name != tt.sasl {
				t.Errorf("SASL mechanism %q, want %q", name, tt.sasl)
			}
			if want := btoi(tt.tls) + btoi(tt.sasl != ""); len(s.Opts()) != want {
				t.Errorf("%d client options, want %d", len(s.Opts()), want)
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
