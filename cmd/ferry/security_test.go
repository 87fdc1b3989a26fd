package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ferrykit/ferry/ferrytest"
)

// T1: the ferry command reaches a secured cluster through its TLS and SASL
// flags, the password coming from the environment: consume prints the
// messages of a topic the user may read. With a wrong password it exits at
// once — the first refusal ends it, nothing is retried — with an error that
// says authentication failed, naming the mechanism.
func TestConsumeSecuredCluster(t *testing.T) {
	s, err := ferrytest.StartSecured(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topic := ferrytest.UniqueName(ferrytest.SecuredPrefix + "t")
	if err := s.CreateTopic(ctx, topic, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ProduceN(ctx, topic, 0, 5); err != nil {
		t.Fatal(err)
	}
	consume := func(password string) *process {
		return startFerry(t, []string{"FERRY_SASL_PASSWORD=" + password},
			"consume", "-brokers", strings.Join(s.Brokers(), ","), "-topic", topic,
			"-group", ferrytest.UniqueName(ferrytest.SecuredPrefix+"g"),
			"-tls-ca", s.CAFile, "-sasl-mechanism", "SCRAM-SHA-512", "-sasl-username", ferrytest.SecuredUser)
	}

	if line := consume(ferrytest.SecuredUserPassword).firstLine(t); !strings.HasPrefix(line, topic+"/0@0 ") {
		t.Fatalf("first line %q, want the message at offset 0", line)
	}

	refused := consume("wrong")
	if err := refused.Wait(); err == nil {
		t.Fatal("consume with a wrong password exited cleanly")
	}
	msg := refused.stderr.String()
	if !strings.Contains(msg, "authentication failed") || !strings.Contains(msg, "SCRAM-SHA-512") {
		t.Errorf("stderr does not say authentication failed with SCRAM-SHA-512:\n%s", msg)
	}
	// "At once" is checked by what happened, not by the clock (a loaded
	// machine slows a refusal, and the connect timeout is only 10 s): a
	// refusal taken for an unreachable broker would be logged as retried,
	// and end at the connect timeout in ErrUnreachable.
	if strings.Contains(msg, "retrying") || strings.Contains(msg, "unreachable") {
		t.Errorf("consume retried a wrong password as if the brokers were unreachable:\n%s", msg)
	}
}

// T1: TLS and SASL settings that cannot work are refused before anything
// runs, naming the bad value.
func TestSecurityFlagsRefused(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"consume", "-topic", "t", "-sasl-mechanism", "GSSAPI", "-sasl-username", "u"}, `"GSSAPI"`},
		{[]string{"consume", "-topic", "t", "-tls-ca", "/nonexistent/ca.pem"}, "/nonexistent/ca.pem"},
		{[]string{"verify", "-brokers", "127.0.0.1:1", "-sasl-mechanism", "PLAIN"}, "empty user name"},
	} {
		var out, errb bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := run(ctx, append(tt.args, "-brokers", "127.0.0.1:1"), &out, &errb)
		cancel()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ferry %s: error %v, want one saying %s", strings.Join(tt.args, " "), err, tt.want)
		}
	}
}
