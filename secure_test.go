package ferry_test

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/ferrytest"
	"github.com/twmb/franz-go/pkg/kadm"
)

// T1, E1, A2: over SASL_SSL, with SCRAM-SHA-512 and with PLAIN, an app
// consumes, commits, and dead-letters a poison message through its
// dead-letter producer — every client it makes authenticates.
func TestSecuredConsumeCommitDeadLetter(t *testing.T) {
	s := securedCluster(t)
	for _, mechanism := range []string{"SCRAM-SHA-512", "PLAIN"} {
		t.Run(mechanism, func(t *testing.T) {
			sc, dlq := s.scenario(t, user(t, mechanism, securedUserPassword)), s.topic(t, 1, true)
			sc.produce(0, 10)
			var mu sync.Mutex
			seen := map[string]int{}
			fn := func(_ context.Context, b *ferry.Batch) error {
				mu.Lock()
				defer mu.Unlock()
				for _, m := range b.Messages {
					if string(m.Value) == "3" {
						return ferry.FailedAt(m, errors.New("poison"))
					}
					seen[string(m.Value)]++
				}
				return nil
			}
			app := sc.start(sc.route(fn, ferry.DeadLetter(dlq), ferry.MaxRetries(1), ferry.Retry(ferry.ConstantBackoff(20*time.Millisecond))))
			dead := readAll(t, s.Cluster, dlq, 1)
			sc.waitCommittedAt(0, 10) // past the poison message
			sc.stop(app)
			if len(dead) != 1 || string(dead[0].Value) != "3" || header(dead[0], ferry.HeaderOriginalOffset) != "3" {
				t.Fatalf("dead letters %v, want the message at offset 3", values(dead))
			}
			mu.Lock()
			defer mu.Unlock()
			for i := range 10 {
				if want := strconv.Itoa(i); i != 3 && seen[want] == 0 {
					t.Errorf("message %s never consumed", want)
				}
			}
		})
	}
}

// T1, S3: an exactly-once round over SASL_SSL, with SCRAM-SHA-512 and with
// PLAIN: the transactional producer authenticates too, each input has one
// committed output and the input offsets are committed.
func TestSecuredExactlyOnce(t *testing.T) {
	s := securedCluster(t)
	for _, mechanism := range []string{"SCRAM-SHA-512", "PLAIN"} {
		t.Run(mechanism, func(t *testing.T) {
			sc, out := s.scenario(t, user(t, mechanism, securedUserPassword)), s.topic(t, 1, true)
			sc.produce(0, 30)
			app := sc.start(ferry.TransactionalID(ferrytest.UniqueName(securedPrefix+"txn")),
				sc.route(copier(out, nil), ferry.WithDelivery(ferry.ExactlyOnce), ferry.MaxMessages(10)))
			waitOutputs(t, s.Cluster, out, 30)
			sc.stop(app)
			checkExactlyOnce(t, committedOutputs(t, s.Cluster, out), 1, 30)
			sc.wantCommitted(map[int32]int64{0: 30})
		})
	}
}

// runRefused runs an app that the cluster turns away and returns Run's
// error, how long Run took, and the log.
func runRefused(t *testing.T, opts ...ferry.Option) (error, time.Duration, string) {
	t.Helper()
	log, sink := testLogger(t)
	app, err := ferry.New(append(opts, ferry.Logger(log), ferry.ConnectTimeout(10*time.Second))...)
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	err = app.Run(ctxFor(t, 60*time.Second))
	return err, time.Since(began), sink.String()
}

// checkPrompt checks that a refusal came before ConnectTimeout (10 s), was
// not retried, and left nothing committed.
func checkPrompt(t *testing.T, s *secured, took time.Duration, log, group, tp string) {
	t.Helper()
	if took >= 10*time.Second {
		t.Errorf("Run took %s, want well within ConnectTimeout (10s)", took)
	}
	if strings.Contains(log, "retrying") {
		t.Errorf("a refusal was retried:\n%s", log)
	}
	if got, _ := s.Committed(ctxFor(t, 10*time.Second), group, tp); len(got) != 0 {
		t.Errorf("committed %v, want nothing", got)
	}
}

// T2: a wrong password fails Run at once with an error wrapping
// ErrAuthentication that names the mechanism, for each mechanism.
func TestSecuredWrongPassword(t *testing.T) {
	s := securedCluster(t)
	tp := s.topic(t, 1, true)
	produceN(t, s.Cluster, tp, 0, 3)
	for _, mechanism := range []string{"SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"} {
		t.Run(mechanism, func(t *testing.T) {
			group := ferrytest.UniqueName(securedPrefix + "g")
			err, took, log := runRefused(t, s.app(t, mechanism, "wrong", ferry.RouteFunc(group, tp, nopConsume))...)
			if !errors.Is(err, ferry.ErrAuthentication) || errors.Is(err, ferry.ErrUnreachable) {
				t.Fatalf("Run returned %v, want an error wrapping ErrAuthentication only", err)
			}
			if !strings.Contains(err.Error(), mechanism) {
				t.Errorf("error %q does not name the mechanism %s", err, mechanism)
			}
			checkPrompt(t, s, took, log, group, tp)
		})
	}
}

// T2: brokers whose certificate is signed by a CA the app does not trust,
// or an app that speaks plaintext to a TLS listener, fail Run at once with
// an error wrapping ErrTLS.
func TestSecuredTLSRefused(t *testing.T) {
	s := securedCluster(t)
	tp := s.topic(t, 1, true)
	for _, tt := range []struct {
		name string
		tls  ferry.Option
	}{
		{"unknown CA", ferry.TLS(&tls.Config{MinVersion: tls.VersionTLS12})}, // the system's roots only
		{"plaintext", ferry.TLS(nil)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			group := ferrytest.UniqueName(securedPrefix + "g")
			opts := append(s.app(t, "SCRAM-SHA-512", securedUserPassword, ferry.RouteFunc(group, tp, nopConsume)), tt.tls)
			err, took, log := runRefused(t, opts...)
			if !errors.Is(err, ferry.ErrTLS) || errors.Is(err, ferry.ErrUnreachable) {
				t.Fatalf("Run returned %v, want an error wrapping ErrTLS only", err)
			}
			if !strings.Contains(err.Error(), "TLS") {
				t.Errorf("error %q does not say TLS", err)
			}
			checkPrompt(t, s, took, log, group, tp)
		})
	}
}

// T3: an ACL that denies the app its topic, its consumer group or its
// transactional id fails Run with an error wrapping ErrNotAuthorized that
// names the resource; nothing is consumed or committed.
func TestSecuredDeniedACL(t *testing.T) {
	s := securedCluster(t)
	allowed, denied := s.topic(t, 1, true), s.topic(t, 1, false)
	produceN(t, s.Cluster, allowed, 0, 3)
	produceN(t, s.Cluster, denied, 0, 3)
	deniedTxn := ferrytest.UniqueName("denied-txn")
	for _, tt := range []struct {
		name, group, topic, names string
		more                      []ferry.Option
		topicOpts                 []ferry.TopicOption
	}{
		{name: "topic", group: ferrytest.UniqueName(securedPrefix + "g"), topic: denied, names: `topic "` + denied + `"`},
		{name: "group", group: ferrytest.UniqueName("denied-g"), topic: allowed, names: `consumer group "`},
		{name: "transactional id", group: ferrytest.UniqueName(securedPrefix + "g"), topic: allowed,
			names: `transactional id "` + deniedTxn, more: []ferry.Option{ferry.TransactionalID(deniedTxn)},
			topicOpts: []ferry.TopicOption{ferry.WithDelivery(ferry.ExactlyOnce)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder()
			err, took, log := runRefused(t, s.app(t, "SCRAM-SHA-512", securedUserPassword,
				append(tt.more, ferry.RouteFunc(tt.group, tt.topic, rec.fn(), tt.topicOpts...))...)...)
			if !errors.Is(err, ferry.ErrNotAuthorized) {
				t.Fatalf("Run returned %v, want an error wrapping ErrNotAuthorized", err)
			}
			if !strings.Contains(err.Error(), tt.names) {
				t.Errorf("error %q does not name the %s (%s)", err, tt.name, tt.names)
			}
			if n := rec.distinct(tt.topic); n != 0 {
				t.Errorf("consumed %d messages", n)
			}
			checkPrompt(t, s, took, log, tt.group, tt.topic)
		})
	}
}

// T1, O2: TLS and SASL settings that cannot work are errors from New,
// wrapping ErrInvalidConfig; an option replaces what the environment says.
func TestSecuritySettingsValidated(t *testing.T) {
	route := ferry.RouteFunc("g", "t", nopConsume)
	broker := ferry.Brokers("127.0.0.1:1")
	for _, tt := range []struct {
		name string
		env  map[string]string
		opts []ferry.Option
		want string // in the error; "" for none
	}{
		{name: "unknown mechanism in the environment", env: map[string]string{"FERRY_SASL_MECHANISM": "GSSAPI", "FERRY_SASL_USERNAME": "u"}, want: "GSSAPI"},
		{name: "an option replaces the environment's mechanism", env: map[string]string{"FERRY_SASL_MECHANISM": "GSSAPI"},
			opts: []ferry.Option{ferry.SASLScramSHA512("u", "p")}},
		{name: "missing CA file in the environment", env: map[string]string{"FERRY_TLS_CA": "/nonexistent/ca.pem"}, want: "/nonexistent/ca.pem"},
		{name: "an option replaces the environment's TLS", env: map[string]string{"FERRY_TLS_CA": "/nonexistent/ca.pem"},
			opts: []ferry.Option{ferry.TLS(nil)}},
		{name: "TLSFiles with a missing file", opts: []ferry.Option{ferry.TLSFiles("/nonexistent/ca.pem", "", "")}, want: "/nonexistent/ca.pem"},
		{name: "SASLPlain without a user", opts: []ferry.Option{ferry.SASLPlain("", "p")}, want: "empty user name"},
		{name: "SASLOAuthBearer(nil)", opts: []ferry.Option{ferry.SASLOAuthBearer(nil)}, want: "nil token function"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			_, err := ferry.New(append([]ferry.Option{broker, route}, tt.opts...)...)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if !errors.Is(err, ferry.ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New returned %v, want an ErrInvalidConfig saying %q", err, tt.want)
			}
		})
	}
}

// T3: an ACL that starts denying a topic while the app consumes it stops Run
// with an error wrapping ErrNotAuthorized that names the topic, instead of
// logging fetch errors forever.
func TestSecuredDeniedWhileRunning(t *testing.T) {
	s := securedCluster(t)
	sc := s.scenario(t, user(t, "SCRAM-SHA-512", securedUserPassword))
	sc.produce(0, 3)
	app := sc.start(sc.route(sc.rec.fn()))
	sc.waitSeen(3)
	deny := kadm.NewACLs().Deny("User:"+securedUser).Topics(sc.topic).Operations(kadm.OpRead, kadm.OpDescribe).
		ResourcePatternType(kadm.ACLPatternLiteral)
	if _, err := s.Admin().CreateACLs(ctxFor(t, 10*time.Second), deny); err != nil {
		t.Fatal(err)
	}
	sc.produce(0, 3)
	returned, err := app.Returned(60 * time.Second)
	if !returned {
		t.Fatal("Run did not stop after its topic was denied")
	}
	if !errors.Is(err, ferry.ErrNotAuthorized) || !strings.Contains(err.Error(), sc.topic) {
		t.Fatalf("Run returned %v, want an error wrapping ErrNotAuthorized naming %s", err, sc.topic)
	}
}

// T1: OAUTHBEARER with a token callback, on the secured real broker (its
// listener accepts unsigned tokens, for tests; the embedded cluster has no
// OAUTHBEARER). The callback is asked for a token, and the app consumes.
func TestSecuredOAuthBearer(t *testing.T) {
	if os.Getenv("FERRY_SECURE_BROKERS") == "" {
		t.Skip("needs the secured real broker (FERRY_SECURE_BROKERS): the embedded cluster has no OAUTHBEARER")
	}
	var asked atomic.Int32
	token := func(context.Context) (string, error) {
		asked.Add(1)
		return unsignedToken(securedUser, time.Hour), nil
	}
	sc := securedCluster(t).scenario(t, ferry.SASLOAuthBearer(token))
	sc.produce(0, 3)
	app := sc.start(sc.route(sc.rec.fn()))
	sc.waitSeen(3)
	sc.stop(app)
	if asked.Load() == 0 {
		t.Fatal("the token callback was never called")
	}
}

// unsignedToken returns an unsigned JWT (alg none) for subject, as Kafka's
// test-only OAUTHBEARER validator accepts.
func unsignedToken(subject string, life time.Duration) string {
	enc := base64.RawURLEncoding.EncodeToString
	now := time.Now()
	claims := fmt.Sprintf(`{"sub":%q,"iat":%d,"exp":%d}`, subject, now.Unix(), now.Add(life).Unix())
	return enc([]byte(`{"alg":"none"}`)) + "." + enc([]byte(claims)) + "."
}

// T1, T2: a client certificate from files (TLSFiles with a certificate and a
// key) is presented to brokers that verify it: one signed by the brokers'
// CA connects; one signed by a CA they do not trust fails Run with ErrTLS.
// On the embedded cluster the certificate comes with SASL; on the real
// broker it is the only credential, on its listener that requires one
// (scripts/kafka up --secure; FERRY_SECURE_CERT_BROKERS).
func TestSecuredClientCertificate(t *testing.T) {
	s := securedCluster(t)
	if s.ClientCertFile == "" {
		t.Skip("the secured real broker has no client-certificate listener (FERRY_SECURE_CERT_BROKERS)")
	}
	t.Setenv("FERRY_SECURE_BROKERS", "")                 // the stranger is embedded, whatever the suite runs on
	stranger, err := ferrytest.StartSecured(t.TempDir()) // another CA, another client certificate
	if err != nil {
		t.Fatal(err)
	}
	stranger.Close()
	tp := s.topic(t, 1, true)
	produceN(t, s.Cluster, tp, 0, 3)
	withCert := func(cert, key string, more ...ferry.Option) []ferry.Option {
		if s.ClientCertBrokers == nil {
			return s.app(t, "SCRAM-SHA-512", securedUserPassword, append([]ferry.Option{ferry.TLSFiles(s.CAFile, cert, key)}, more...)...)
		}
		log, _ := testLogger(t)
		return append([]ferry.Option{ferry.Brokers(s.ClientCertBrokers...), ferry.Logger(log),
			ferry.CommitInterval(200 * time.Millisecond), ferry.TLSFiles(s.CAFile, cert, key)}, more...)
	}

	rec := newRecorder()
	group := ferrytest.UniqueName(securedPrefix + "g")
	app := start(t, withCert(s.ClientCertFile, s.ClientKeyFile, ferry.RouteFunc(group, tp, rec.fn()))...)
	rec.waitDistinct(t, tp, 3, 30*time.Second)
	if err := app.stop(t); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Committed(ctxFor(t, 10*time.Second), group, tp); got[0] != 3 {
		t.Errorf("committed %v, want partition 0 at 3", got)
	}

	group = ferrytest.UniqueName(securedPrefix + "g")
	err, took, log := runRefused(t, withCert(stranger.ClientCertFile, stranger.ClientKeyFile, ferry.RouteFunc(group, tp, nopConsume))...)
	if !errors.Is(err, ferry.ErrTLS) {
		t.Fatalf("Run returned %v, want an error wrapping ErrTLS", err)
	}
	checkPrompt(t, s, took, log, group, tp)
}
