package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ferrykit/ferry/ferrytest"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/")

// ferryExec runs the ferry binary with stdin and returns its stdout, stderr
// and exit code.
func ferryExec(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return out.String(), errb.String(), exit.ExitCode()
	case err != nil:
		t.Fatalf("ferry %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errb.String(), 0
}

// ferryOK runs the binary and fails the test unless it exits 0.
func ferryOK(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, errs, code := ferryExec(t, stdin, args...)
	if code != 0 {
		t.Fatalf("ferry %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s:\n--- got\n%s--- want\n%s", path, got, want)
	}
}

// testCluster returns the cluster of FERRY_BROKERS, or an embedded one, and
// the -brokers flag reaching it.
func testCluster(t *testing.T) (*ferrytest.Cluster, string) {
	t.Helper()
	c, err := ferrytest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, "-brokers=" + strings.Join(c.Brokers(), ",")
}

// Every command has a description, examples and -h, which exits 0.
func TestEveryCommandHasHelp(t *testing.T) {
	out := ferryOK(t, "", "-h")
	for _, cmd := range [][]string{
		{"topics"}, {"topics", "list"}, {"topics", "describe"}, {"topics", "create"}, {"topics", "delete"},
		{"lag"}, {"offsets"}, {"offsets", "reset"}, {"produce"}, {"consume"}, {"ui"}, {"cluster"}, {"demo"}, {"verify"}, {"tour"}, {"bench"}, {"version"},
	} {
		if len(cmd) == 1 && !strings.Contains(out, "\n  "+cmd[0]+" ") {
			t.Errorf("ferry -h does not list %s:\n%s", cmd[0], out)
		}
		_, help, code := ferryExec(t, "", append(cmd, "-h")...)
		name := strings.Join(cmd, " ")
		if code != 0 {
			t.Errorf("ferry %s -h: exit %d", name, code)
		}
		for _, want := range []string{"DESCRIPTION", "USAGE\n  ferry " + name, "EXAMPLES\n", "ferry " + name + " "} {
			if !strings.Contains(help, want) {
				t.Errorf("ferry %s -h lacks %q:\n%s", name, want, help)
			}
		}
	}
}

// Exit codes scripts can rely on: 2 for a wrong command line (nothing ran),
// 1 for a command that failed, each error printed once with one prefix.
func TestExitCodesAndErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"nope"}, exitUsage, `ferry: unknown command "nope"`},
		{[]string{}, exitUsage, "USAGE"},
		{[]string{"consume", "-nope"}, exitUsage, "flag provided but not defined: -nope"},
		{[]string{"consume", "-topic", "t", "extra"}, exitUsage, `ferry consume: unexpected argument "extra"`},
		{[]string{"consume", "-topic", "t", "-count", "-1"}, exitUsage, "ferry: -count -1: must be at least 0"},
		{[]string{"consume", "-topic", "t", "-offset", "12"}, exitUsage, "an exact offset needs -partition"},
		{[]string{"produce", "-topic", "t", "-brokers", ""}, exitUsage, "no brokers: give -brokers or set FERRY_BROKERS"},
		{[]string{"topics", "create"}, exitUsage, "name at least one topic"},
		{[]string{"offsets"}, exitUsage, "SUBCOMMANDS\n  reset"},
		{[]string{"offsets", "rewind"}, exitUsage, `ferry: offsets: unknown subcommand "rewind"`},
		{[]string{"topics", "describe", "-brokers", "127.0.0.1:1", "-tls-cert", "/nonexistent.pem", "t"}, exitUsage, "ferry: topics describe: TLS client certificate"},
		{[]string{"bench", "-brokers", "127.0.0.1:1", "-tls-cert", "/nonexistent.pem"}, exitUsage, "ferry: bench: TLS client certificate"},
		{[]string{"lag", "-group", "g", "-sasl-mechanism", "MD5", "-brokers", "127.0.0.1:1"}, exitUsage, "MD5"},
	} {
		cmd := exec.Command(binary, tc.args...)
		cmd.Env = append(os.Environ(), "FERRY_BROKERS=")
		var errb bytes.Buffer
		cmd.Stderr = &errb
		err := cmd.Run()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		}
		name := "ferry " + strings.Join(tc.args, " ")
		if code != tc.code {
			t.Errorf("%s: exit %d, want %d\n%s", name, code, tc.code, errb.String())
		}
		if !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%s: stderr lacks %q:\n%s", name, tc.want, errb.String())
		}
		if strings.Count(errb.String(), "ferry: ferry") > 0 || strings.Count(errb.String(), tc.want) > 1 {
			t.Errorf("%s: error printed twice or with a doubled prefix:\n%s", name, errb.String())
		}
	}
}

// version prints the Go that built the binary, and JSON on -json.
func TestVersion(t *testing.T) {
	if out := ferryOK(t, "", "version"); !strings.HasPrefix(out, "ferry ") || !strings.Contains(out, "go1.") {
		t.Errorf("ferry version: %q", out)
	}
	var v buildVersion
	if err := json.Unmarshal([]byte(ferryOK(t, "", "version", "-json")), &v); err != nil || v.Version == "" || v.Go == "" {
		t.Errorf("ferry version -json: %+v, %v", v, err)
	}
}

// normalize replaces what changes from run to run (the topic's name,
// timestamps) so output can be compared with a golden file.
func normalize(s, topic string) string {
	s = strings.ReplaceAll(s, topic, "TOPIC")
	return regexp.MustCompile(`\d{4}-\d\d-\d\dT[0-9:.]+Z`).ReplaceAllString(s, "TIME")
}

// produce reads lines (key separator, headers, an empty line, a line with an
// empty key) and consume shows them back: nil and empty keys told apart,
// headers and timestamps shown, in text and JSON.
func TestProduceThenConsume(t *testing.T) {
	_, brokers := testCluster(t)
	topic := ferrytest.UniqueName("cli")
	ferryOK(t, "", "topics", "create", topic, brokers, "-partitions", "2") // flags after the argument count
	input := "k1:v1\n:empty key\nno key\n\nk2:\n"
	ferryOK(t, input, "produce", brokers, "-topic", topic, "-key-separator", ":", "-header", "source=test", "-partition", "1")
	out := ferryOK(t, "", "consume", brokers, "-topic", topic, "-until-end")
	golden(t, "consume.txt", normalize(out, topic))

	out = ferryOK(t, "", "consume", brokers, "-topic", topic, "-partition", "1", "-offset", "1", "-count", "3", "-format", "json")
	var recs []jsonRecord
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var r jsonRecord
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("%v in\n%s", err, out)
		}
		recs = append(recs, r)
	}
	if len(recs) != 3 || recs[0].Offset != 1 {
		t.Fatalf("-offset 1 -count 3: got %+v", recs)
	}
	if recs[0].Key == nil || *recs[0].Key != "" || recs[1].Key != nil || *recs[2].Value != "" {
		t.Errorf("nil and empty keys or values confused: %s", out)
	}
	if len(recs[0].Headers) != 1 || recs[0].Headers[0].Key != "source" || *recs[0].Headers[0].Value != "test" {
		t.Errorf("headers: %+v", recs[0].Headers)
	}
	if time.Since(recs[0].Timestamp) > time.Hour || recs[0].Timestamp.IsZero() {
		t.Errorf("timestamp %s", recs[0].Timestamp)
	}
	// Reading commits nothing: no group appears for the topic.
	if out := ferryOK(t, "", "consume", brokers, "-topic", topic, "-offset", "-2", "-until-end"); strings.Count(out, "\n") != 2 {
		t.Errorf("-offset -2 printed:\n%s", out)
	}
}

// topics create, list, describe and delete, in text and JSON.
func TestTopics(t *testing.T) {
	_, brokers := testCluster(t)
	topic := ferrytest.UniqueName("cli")
	out := ferryOK(t, "", "topics", "create", brokers, topic, "-partitions", "3", "-config", "retention.ms=3600000")
	golden(t, "topics-create.txt", normalize(out, topic))
	ferryOK(t, "a\nb\nc\n", "produce", brokers, "-topic", topic, "-partition", "2")

	var list []topicRow
	if err := json.Unmarshal([]byte(ferryOK(t, "", "topics", brokers, "-json")), &list); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range list {
		found = found || r.Name == topic && r.Partitions == 3
	}
	if !found {
		t.Errorf("topics -json lacks %s with 3 partitions: %+v", topic, list)
	}
	if out := ferryOK(t, "", "topics", "list", brokers); !regexp.MustCompile(`(?m)^` + topic + ` +3 +1\n`).MatchString(out) {
		t.Errorf("topics list:\n%s", out)
	}

	out = ferryOK(t, "", "topics", "describe", brokers, topic)
	brokerIDs := regexp.MustCompile(`(?m)^(\d+ +)\d+( +)\d+( +)\d+`) // the embedded and the real broker number theirs differently
	golden(t, "topics-describe.txt", brokerIDs.ReplaceAllString(normalize(out, topic), "${1}N${2}N${3}N"))
	var desc []topicDescription
	if err := json.Unmarshal([]byte(ferryOK(t, "", "topics", "describe", brokers, "-json", topic)), &desc); err != nil {
		t.Fatal(err)
	}
	if len(desc) != 1 || len(desc[0].Partitions) != 3 || desc[0].Partitions[2].End != 3 || desc[0].Configs["retention.ms"] != "3600000" {
		t.Errorf("topics describe -json: %+v", desc)
	}

	// The group's cluster flags hold for its subcommands, on either side of their name.
	if out := ferryOK(t, "", "topics", brokers, "delete", topic); out != "deleted "+topic+"\n" {
		t.Errorf("topics delete: %q", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := ferrytest.WaitFor(ctx, func() bool {
		_, _, code := ferryExec(t, "", "topics", "describe", brokers, topic)
		return code == exitFailed
	})
	if err != nil {
		t.Errorf("the topic is still described after delete")
	}
}
