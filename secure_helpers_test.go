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

// app returns the options of an app that reaches s as the user with
// mechanism and password, over TLS.
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
		ferry.TLSFiles(s.CAFile, "", ""),
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
