package bench

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ferrykit/ferry/internal/security"
)

// javaClientConfig writes the TLS and SASL settings of the FERRY_TLS* and
// FERRY_SASL* variables (read with getenv) as the client properties of
// Kafka's Java tools into dir, and returns the file's path; "" when the
// settings are plaintext without SASL. A client certificate's key is
// rewritten as PKCS #8, the only form Kafka's PEM keystore reads. What the
// Java client cannot be told this way is an error: another name to check
// the brokers' certificates against (FERRY_TLS_SERVER_NAME), and
// OAUTHBEARER with a fixed token.
func javaClientConfig(getenv func(string) string, dir string) (string, error) {
	sec, err := security.FromEnv(getenv)
	if err != nil {
		return "", err
	}
	tlsOn := sec.TLS != nil
	ca, cert, key := getenv(security.EnvTLSCA), getenv(security.EnvTLSCert), getenv(security.EnvTLSKey)
	mech := ""
	if sec.SASL != nil {
		mech = sec.SASL.Name()
	}
	if !tlsOn && mech == "" {
		return "", nil
	}
	if getenv(security.EnvTLSServerName) != "" {
		return "", fmt.Errorf("Kafka's Java tools cannot check the brokers' certificates against another name (%s)", security.EnvTLSServerName)
	}
	var props []string
	set := func(k, v string) { props = append(props, k+"="+escapeProperty(v)) }
	switch {
	case tlsOn && mech != "":
		set("security.protocol", "SASL_SSL")
	case tlsOn:
		set("security.protocol", "SSL")
	default:
		set("security.protocol", "SASL_PLAINTEXT")
	}
	if ca != "" {
		set("ssl.truststore.type", "PEM")
		set("ssl.truststore.location", ca)
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return "", err
		}
		der, err := x509.MarshalPKCS8PrivateKey(pair.PrivateKey)
		if err != nil {
			return "", err
		}
		var b strings.Builder
		pem.Encode(&b, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
		for _, c := range pair.Certificate {
			pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c})
		}
		keystore := filepath.Join(dir, "keystore.pem")
		if err := os.WriteFile(keystore, []byte(b.String()), 0o600); err != nil {
			return "", err
		}
		set("ssl.keystore.type", "PEM")
		set("ssl.keystore.location", keystore)
	}
	switch mech {
	case "":
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		module := "org.apache.kafka.common.security.scram.ScramLoginModule"
		if mech == "PLAIN" {
			module = "org.apache.kafka.common.security.plain.PlainLoginModule"
		}
		set("sasl.mechanism", mech)
		set("sasl.jaas.config", fmt.Sprintf("%s required username=%s password=%s;", module,
			jaasQuote(getenv(security.EnvSASLUsername)), jaasQuote(getenv(security.EnvSASLPassword))))
	default:
		return "", fmt.Errorf("Kafka's Java tools cannot authenticate with %s=%s here (PLAIN and SCRAM only)", security.EnvSASLMechanism, mech)
	}
	path := filepath.Join(dir, "client.properties")
	return path, os.WriteFile(path, []byte(strings.Join(props, "\n")+"\n"), 0o600)
}

// jaasQuote quotes a JAAS option value.
func jaasQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// escapeProperty escapes a value for a Java properties file.
func escapeProperty(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`, "\r", `\r`).Replace(s)
}
