package bench

import (
	"os"
	"strings"
	"testing"

	"github.com/ferrykit/ferry/ferrytest"
)

// T1: Kafka's Java tools run by ferry bench get the TLS and SASL settings of
// the environment as client properties: the CA as a PEM truststore, a client
// certificate as a PEM keystore (its key as PKCS #8), SASL as a JAAS line;
// plaintext gets no file, and what the Java client cannot be told is an
// error.
func TestJavaClientConfig(t *testing.T) {
	t.Setenv("FERRY_SECURE_BROKERS", "") // an embedded secured cluster, for its certificate files
	s, err := ferrytest.StartSecured(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }

	if path, err := javaClientConfig(env(nil), t.TempDir()); err != nil || path != "" {
		t.Errorf("plaintext: %q, %v; want no file", path, err)
	}

	path, err := javaClientConfig(env(map[string]string{
		"FERRY_TLS_CA": s.CAFile, "FERRY_TLS_CERT": s.ClientCertFile, "FERRY_TLS_KEY": s.ClientKeyFile,
		"FERRY_SASL_MECHANISM": "SCRAM-SHA-512", "FERRY_SASL_USERNAME": "ferry", "FERRY_SASL_PASSWORD": `se"cret`,
	}), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	props := string(b)
	for _, want := range []string{
		"security.protocol=SASL_SSL\n",
		"ssl.truststore.type=PEM\n", "ssl.truststore.location=" + s.CAFile + "\n",
		"ssl.keystore.type=PEM\n",
		"sasl.mechanism=SCRAM-SHA-512\n",
		`sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="ferry" password="se\\"cret";` + "\n",
	} {
		if !strings.Contains(props, want) {
			t.Errorf("client properties lack %q:\n%s", want, props)
		}
	}
	_, keystore, _ := strings.Cut(props, "ssl.keystore.location=")
	keystore, _, _ = strings.Cut(keystore, "\n")
	pemData, err := os.ReadFile(keystore)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(pemData), "-----BEGIN PRIVATE KEY-----") || !strings.Contains(string(pemData), "-----BEGIN CERTIFICATE-----") {
		t.Errorf("the keystore is not a PKCS #8 key followed by the certificate:\n%.200s", pemData)
	}

	for _, bad := range []map[string]string{
		{"FERRY_TLS_CA": s.CAFile, "FERRY_TLS_SERVER_NAME": "kafka.example"},
		{"FERRY_SASL_MECHANISM": "OAUTHBEARER", "FERRY_SASL_TOKEN": "t"},
	} {
		if _, err := javaClientConfig(env(bad), t.TempDir()); err == nil {
			t.Errorf("%v: no error, want one: the Java client cannot be told this", bad)
		}
	}
}
