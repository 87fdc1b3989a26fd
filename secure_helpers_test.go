package ferry_test

import (
	"os"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrytest"
)

// The users of ferrytest's secured clusters.
const (
	securedUser         = ferrytest.SecuredUser
	securedUserPassword = ferrytest.SecuredUserPassword
	securedPrefix       = ferrytest.SecuredPrefix
)

// secured is a cluster that requires SASL over TLS and checks ACLs.
type secured struct{ *ferrytest.Secured }

// securedCluster returns the secured real broker named by
// FERRY_SECURE_BROKERS (scripts/kafka up --secure), or an embedded one.
func securedCluster(t *testing.T) *secured {
	t.Helper()
	if os.Getenv("CI") == "true" && os.Getenv("FERRY_BROKERS") != "" && os.Getenv("FERRY_SECURE_BROKERS") == "" {
		t.Fatal("CI runs the real-broker suite with a secured broker too: FERRY_SECURE_BROKERS is not set")
	}
	s, err := ferrytest.StartSecured(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return &secured{s}
}

// user returns the SASL option of the user with mechanism and password.
func user(t *testing.T, mechanism, password string) ferry.Option {
	switch mechanism {
	case "PLAIN":
		return ferry.SASLPlain(securedUser, password)
	case "SCRAM-SHA-256":
		return ferry.SASLScramSHA256(securedUser, password)
	case "SCRAM-SHA-512":
		return ferry.SASLScramSHA512(securedUser, password)
	}
	t.Fatalf("unknown mechanism %s", mechanism)
	return nil
}

// scenario returns a scenario on s, on a topic and in a group the user may
// use, whose apps reach s over TLS and authenticate with auth (user's).
func (s *secured) scenario(t *testing.T, auth ferry.Option) *scenario {
	t.Helper()
	return &scenario{t: t, c: s.Cluster, topic: s.topic(t, 1, true), group: ferrytest.UniqueName(securedPrefix + "g"),
		rec: newRecorder(), reach: []ferry.Option{ferry.TLSFiles(s.CAFile, "", ""), auth}}
}

// app returns the options of an app that reaches s as the user with
// mechanism and password, over TLS.
func (s *secured) app(t *testing.T, mechanism, password string, more ...ferry.Option) []ferry.Option {
	log, _ := testLogger(t)
	return append([]ferry.Option{
		ferry.Brokers(s.Brokers()...),
		ferry.Logger(log),
		ferry.CommitInterval(200 * time.Millisecond),
		ferry.TLSFiles(s.CAFile, "", ""),
		user(t, mechanism, password),
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
