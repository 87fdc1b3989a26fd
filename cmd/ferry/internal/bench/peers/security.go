package main

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash"
	"os"
	"strconv"
	"strings"

	"github.com/IBM/sarama"
	"github.com/xdg-go/scram"
)

// security is how to reach the cluster: the FERRY_TLS* and FERRY_SASL*
// variables ferry reads (ferry bench sets them from its flags), so every
// client of a bench authenticates the same way.
type security struct {
	tls        *tls.Config // nil: plaintext
	caFile     string      // "": the system's CAs
	certFile   string      // the client certificate, with keyFile
	keyFile    string
	serverName string
	mechanism  string // "", PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
	user       string
	password   string
}

// securityFromEnv reads the settings; OAUTHBEARER is refused, as none of the
// peers is set up for a fixed token.
func securityFromEnv() (security, error) {
	s := security{
		caFile:     os.Getenv("FERRY_TLS_CA"),
		certFile:   os.Getenv("FERRY_TLS_CERT"),
		keyFile:    os.Getenv("FERRY_TLS_KEY"),
		serverName: os.Getenv("FERRY_TLS_SERVER_NAME"),
		mechanism:  strings.ToUpper(os.Getenv("FERRY_SASL_MECHANISM")),
		user:       os.Getenv("FERRY_SASL_USERNAME"),
		password:   os.Getenv("FERRY_SASL_PASSWORD"),
	}
	on := s.caFile != "" || s.certFile != "" || s.serverName != ""
	if v := strings.ToLower(os.Getenv("FERRY_TLS")); v == "on" {
		on = true
	} else if b, err := strconv.ParseBool(v); err == nil && b {
		on = true
	}
	if on {
		s.tls = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: s.serverName}
		if s.caFile != "" {
			pem, err := os.ReadFile(s.caFile)
			if err != nil {
				return s, err
			}
			s.tls.RootCAs = x509.NewCertPool()
			if !s.tls.RootCAs.AppendCertsFromPEM(pem) {
				return s, fmt.Errorf("FERRY_TLS_CA %s: no PEM certificate", s.caFile)
			}
		}
		if s.certFile != "" || s.keyFile != "" {
			pair, err := tls.LoadX509KeyPair(s.certFile, s.keyFile)
			if err != nil {
				return s, err
			}
			s.tls.Certificates = []tls.Certificate{pair}
		}
	}
	switch s.mechanism {
	case "", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
	default:
		return s, fmt.Errorf("FERRY_SASL_MECHANISM=%s: the peers take PLAIN and SCRAM only", s.mechanism)
	}
	return s, nil
}

// sarama sets sarama's TLS and SASL.
func (s security) sarama(cfg *sarama.Config) {
	if s.tls != nil {
		cfg.Net.TLS.Enable, cfg.Net.TLS.Config = true, s.tls
	}
	if s.mechanism == "" {
		return
	}
	cfg.Net.SASL.Enable, cfg.Net.SASL.Handshake = true, true
	cfg.Net.SASL.User, cfg.Net.SASL.Password = s.user, s.password
	switch s.mechanism {
	case "PLAIN":
		cfg.Net.SASL.Mechanism = sarama.SASLTypePlaintext
	case "SCRAM-SHA-256":
		cfg.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA256
		cfg.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: sha256.New} }
	case "SCRAM-SHA-512":
		cfg.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA512
		cfg.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: sha512.New} }
	}
}

// scramClient is sarama's SCRAM conversation, on xdg-go/scram (as sarama's
// own example does).
type scramClient struct {
	hash func() hash.Hash
	conv *scram.ClientConversation
}

func (c *scramClient) Begin(user, password, authzID string) error {
	cl, err := scram.HashGeneratorFcn(c.hash).NewClient(user, password, authzID)
	if err != nil {
		return err
	}
	c.conv = cl.NewConversation()
	return nil
}

func (c *scramClient) Step(challenge string) (string, error) {
	if c.conv == nil {
		return "", errors.New("SCRAM: no conversation")
	}
	return c.conv.Step(challenge)
}

func (c *scramClient) Done() bool { return c.conv != nil && c.conv.Done() }

// librdkafka returns confluent-kafka-go's settings.
func (s security) librdkafka() (map[string]any, error) {
	m := map[string]any{}
	switch {
	case s.tls != nil && s.mechanism != "":
		m["security.protocol"] = "SASL_SSL"
	case s.tls != nil:
		m["security.protocol"] = "SSL"
	case s.mechanism != "":
		m["security.protocol"] = "SASL_PLAINTEXT"
	default:
		return m, nil
	}
	if s.serverName != "" {
		return nil, errors.New("FERRY_TLS_SERVER_NAME: librdkafka checks the brokers' certificates against their own names only")
	}
	if s.caFile != "" {
		m["ssl.ca.location"] = s.caFile
	}
	if s.certFile != "" {
		m["ssl.certificate.location"], m["ssl.key.location"] = s.certFile, s.keyFile
	}
	if s.mechanism != "" {
		m["sasl.mechanisms"], m["sasl.username"], m["sasl.password"] = s.mechanism, s.user, s.password
	}
	return m, nil
}
