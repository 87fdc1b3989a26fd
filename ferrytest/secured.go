package ferrytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ferrykit/ferry/internal/security"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// The users of a secured cluster — StartSecured's, and those of
// scripts/kafka's secured mode. Each has the PLAIN, SCRAM-SHA-256 and
// SCRAM-SHA-512 mechanisms. SecuredAdmin is a super user; SecuredUser may
// do anything with topics, consumer groups and transactional ids whose
// names start with SecuredPrefix, and nothing else.
const (
	SecuredAdmin         = "admin"
	SecuredAdminPassword = "admin-secret"
	SecuredUser          = "ferry"
	SecuredUserPassword  = "ferry-secret"
	SecuredPrefix        = "sec-"
)

// Secured is a cluster that requires SASL over TLS and checks ACLs. Its
// own clients (Client, Admin, NewClient, Produce…) connect as SecuredAdmin.
type Secured struct {
	*Cluster
	// CAFile is the PEM file of the CA that signed the brokers'
	// certificates.
	CAFile string
	// ClientCertFile and ClientKeyFile hold SecuredUser's client
	// certificate, signed by the same CA: the embedded cluster verifies it
	// when a client presents one; the real broker requires it on
	// ClientCertBrokers. Empty for a real broker without that listener.
	ClientCertFile, ClientKeyFile string
	// ClientCertBrokers, for the real broker, is its listener that takes
	// TLS with a client certificate (ssl.client.auth=required) and no SASL;
	// the certificate's CN is the user. Nil for the embedded cluster.
	ClientCertBrokers []string
}

// StartSecured returns the secured cluster named by FERRY_SECURE_BROKERS
// and FERRY_SECURE_CA (what scripts/kafka up --secure starts) — with, if
// FERRY_SECURE_CERT_BROKERS names its client-certificate listener,
// FERRY_SECURE_CLIENT_CERT and FERRY_SECURE_CLIENT_KEY — or starts an
// embedded one that requires SASL over TLS, with the users above and their
// ACLs, writing its CA's certificate into dir.
func StartSecured(dir string) (*Secured, error) {
	if brokers := os.Getenv("FERRY_SECURE_BROKERS"); brokers != "" {
		ca := os.Getenv("FERRY_SECURE_CA")
		opts, err := adminOpts(ca)
		if err != nil {
			return nil, err
		}
		c, err := Connect(strings.Split(brokers, ","), opts...)
		if err != nil {
			return nil, err
		}
		s := &Secured{Cluster: c, CAFile: ca}
		if certBrokers := os.Getenv("FERRY_SECURE_CERT_BROKERS"); certBrokers != "" {
			s.ClientCertBrokers = strings.Split(certBrokers, ",")
			s.ClientCertFile, s.ClientKeyFile = os.Getenv("FERRY_SECURE_CLIENT_CERT"), os.Getenv("FERRY_SECURE_CLIENT_KEY")
		}
		return s, nil
	}
	files, serverTLS, err := certificates(dir)
	if err != nil {
		return nil, err
	}
	caFile := files[0]
	opts, err := adminOpts(caFile)
	if err != nil {
		return nil, err
	}
	all := func(r kmsg.ACLResourceType) kfake.ACL {
		return kfake.ACL{Resource: r, Name: SecuredPrefix, Pattern: kmsg.ACLResourcePatternTypePrefixed,
			Operation: kmsg.ACLOperationAll, Allow: true}
	}
	acls := []kfake.ACL{all(kmsg.ACLResourceTypeTopic), all(kmsg.ACLResourceTypeGroup), all(kmsg.ACLResourceTypeTransactionalId),
		{Resource: kmsg.ACLResourceTypeCluster, Name: "kafka-cluster", Pattern: kmsg.ACLResourcePatternTypeLiteral,
			Operation: kmsg.ACLOperationIdempotentWrite, Allow: true}}
	kopts := []kfake.Opt{kfake.NumBrokers(1), kfake.TLS(serverTLS), kfake.EnableSASL(), kfake.EnableACLs(),
		kfake.ListenFn(listenLocal)}
	for _, m := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		kopts = append(kopts, kfake.Superuser(m, SecuredAdmin, SecuredAdminPassword))
		if m == "SCRAM-SHA-512" {
			kopts = append(kopts, kfake.User(m, SecuredUser, SecuredUserPassword, acls...))
		} else {
			kopts = append(kopts, kfake.User(m, SecuredUser, SecuredUserPassword))
		}
	}
	fake, err := kfake.NewCluster(kopts...)
	if err != nil {
		return nil, fmt.Errorf("ferrytest: starting a secured embedded cluster: %w", err)
	}
	c, err := Embedded(fake, opts...)
	if err != nil {
		fake.Close()
		return nil, err
	}
	return &Secured{Cluster: c, CAFile: caFile, ClientCertFile: files[1], ClientKeyFile: files[2]}, nil
}

// adminOpts returns how the super user reaches a cluster whose brokers'
// certificates the CA in caFile signed.
func adminOpts(caFile string) ([]kgo.Opt, error) {
	cfg, err := security.TLSFiles(caFile, "", "")
	if err != nil {
		return nil, fmt.Errorf("ferrytest: %w", err)
	}
	admin := scram.Auth{User: SecuredAdmin, Pass: SecuredAdminPassword}.AsSha512Mechanism()
	return security.Settings{TLS: cfg, SASL: admin}.Opts(), nil
}

// certificates makes a CA, a certificate for 127.0.0.1 and localhost and a
// client certificate, both signed by it; it writes the CA's certificate and
// the client's certificate and key into dir, returns their paths (in that
// order) and the brokers' TLS configuration, which verifies the client
// certificates it is given.
func certificates(dir string) ([3]string, *tls.Config, error) {
	var files [3]string
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return files, nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ferrytest CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(7 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return files, nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return files, nil, err
	}
	// leaf signs a certificate for the template with a new key.
	leaf := func(serial int64, tmpl *x509.Certificate) ([]byte, *ecdsa.PrivateKey, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		tmpl.SerialNumber, tmpl.NotBefore, tmpl.NotAfter = big.NewInt(serial), now.Add(-time.Hour), now.Add(7*24*time.Hour)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		return der, key, err
	}
	serverDER, serverKey, err := leaf(2, &x509.Certificate{Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if err != nil {
		return files, nil, err
	}
	clientDER, clientKey, err := leaf(3, &x509.Certificate{Subject: pkix.Name{CommonName: SecuredUser},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return files, nil, err
	}
	clientKeyDER, err := x509.MarshalPKCS8PrivateKey(clientKey)
	if err != nil {
		return files, nil, err
	}
	for i, f := range []struct {
		name, kind string
		der        []byte
	}{{"ferrytest-ca.pem", "CERTIFICATE", caDER}, {"ferrytest-client.pem", "CERTIFICATE", clientDER},
		{"ferrytest-client-key.pem", "PRIVATE KEY", clientKeyDER}} {
		files[i] = filepath.Join(dir, f.name)
		if err := os.WriteFile(files[i], pem.EncodeToMemory(&pem.Block{Type: f.kind, Bytes: f.der}), 0o600); err != nil {
			return files, nil, err
		}
	}
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(ca)
	return files, &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{serverDER}, PrivateKey: serverKey}},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    clientCAs,
		MinVersion:   tls.VersionTLS12,
	}, nil
}
