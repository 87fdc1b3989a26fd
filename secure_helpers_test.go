package ferry_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrytest"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// The users of a secured cluster — the same as scripts/kafka's secured mode
// creates: a super user, and a user whose ACLs allow every operation on
// topics, consumer groups and transactional ids whose names start with
// securedPrefix, and nothing else.
const (
	securedAdmin         = "admin"
	securedAdminPassword = "admin-secret"
	securedUser          = "ferry"
	securedUserPassword  = "ferry-secret"
	securedPrefix        = "sec-"
)

// secured is a cluster that requires SASL over TLS, its own clients
// connected as the super user.
type secured struct {
	*ferrytest.Cluster
	caFile string // PEM of the CA that signed the brokers' certificates
}

// securedCluster returns the secured real broker named by
// FERRY_SECURE_BROKERS and FERRY_SECURE_CA (scripts/kafka up --secure), or
// an embedded one that requires SASL over TLS and checks ACLs.
func securedCluster(t *testing.T) *secured {
	t.Helper()
	admin := scram.Auth{User: securedAdmin, Pass: securedAdminPassword}.AsSha512Mechanism()
	if brokers := os.Getenv("FERRY_SECURE_BROKERS"); brokers != "" {
		ca := os.Getenv("FERRY_SECURE_CA")
		c, err := ferrytest.Connect(strings.Split(brokers, ","), kgo.SASL(admin), kgo.DialTLSConfig(trusting(t, ca)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return &secured{Cluster: c, caFile: ca}
	}
	if os.Getenv("CI") == "true" && os.Getenv("FERRY_BROKERS") != "" {
		t.Fatal("CI runs the real-broker suite with a secured broker: FERRY_SECURE_BROKERS is not set")
	}
	caFile, serverTLS := testCertificates(t)
	all := func(r kmsg.ACLResourceType) kfake.ACL {
		return kfake.ACL{Resource: r, Name: securedPrefix, Pattern: kmsg.ACLResourcePatternTypePrefixed,
			Operation: kmsg.ACLOperationAll, Allow: true}
	}
	acls := []kfake.ACL{all(kmsg.ACLResourceTypeTopic), all(kmsg.ACLResourceTypeGroup), all(kmsg.ACLResourceTypeTransactionalId),
		{Resource: kmsg.ACLResourceTypeCluster, Name: "kafka-cluster", Pattern: kmsg.ACLResourcePatternTypeLiteral,
			Operation: kmsg.ACLOperationIdempotentWrite, Allow: true}}
	fake, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(serverTLS), kfake.EnableSASL(), kfake.EnableACLs(),
		kfake.Superuser("SCRAM-SHA-512", securedAdmin, securedAdminPassword),
		kfake.User("SCRAM-SHA-512", securedUser, securedUserPassword, acls...),
		kfake.User("SCRAM-SHA-256", securedUser, securedUserPassword),
		kfake.User("PLAIN", securedUser, securedUserPassword))
	if err != nil {
		t.Fatal(err)
	}
	c, err := ferrytest.Embedded(fake, kgo.SASL(admin), kgo.DialTLSConfig(trusting(t, caFile)))
	if err != nil {
		fake.Close()
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return &secured{Cluster: c, caFile: caFile}
}

// trusting returns a TLS configuration that trusts the CA in caFile only.
func trusting(t *testing.T, caFile string) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", caFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// app returns the options of an app that reaches s as user with mechanism
// over TLS.
func (s *secured) app(t *testing.T, mechanism, password string, more ...ferry.Option) []ferry.Option {
	log, _ := testLogger(t)
	var auth ferry.Option
	switch mechanism {
	case "PLAIN":
		auth = ferry.SASLPlain(securedUser, password)
	case "SCRAM-SHA-256":
		auth = ferry.SASLScramSHA256(securedUser, password)
	case "SCRAM-SHA-512":
		auth = ferry.SASLScramSHA512(securedUser, password)
	default:
		t.Fatalf("unknown mechanism %s", mechanism)
	}
	return append([]ferry.Option{
		ferry.Brokers(s.Brokers()...),
		ferry.Logger(log),
		ferry.CommitInterval(200 * time.Millisecond),
		ferry.TLSFiles(s.caFile, "", ""),
		auth,
	}, more...)
}

// topic creates a topic the user may use (allowed is true) or not.
func (s *secured) topic(t *testing.T, partitions int32, allowed bool) string {
	t.Helper()
	name := ferrytest.UniqueName("denied-t")
	if allowed {
		name = ferrytest.UniqueName(securedPrefix + "t")
	}
	if err := s.CreateTopic(ctxFor(t, 20*time.Second), name, partitions); err != nil {
		t.Fatal(err)
	}
	return name
}

// testCertificates makes a CA and a certificate for 127.0.0.1 signed by it;
// it returns the CA's PEM file and the server's TLS configuration.
func testCertificates(t *testing.T) (string, *tls.Config) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ferry test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: key}},
		MinVersion:   tls.VersionTLS12,
	}
}
