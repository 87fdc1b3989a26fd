package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ferrykit/ferry/cmd/ferry/internal/verify"
)

// D5: `ferry verify -modes eos-db` — workers insert one row per input in
// the transaction that stores the offset, while they are SIGKILLed, joined
// and left, and frozen past their session timeout; every input has exactly
// one row. Needs PostgreSQL (FERRY_POSTGRES; scripts/test starts one).
func TestVerifyExactlyOnceIntoPostgres(t *testing.T) {
	url := os.Getenv("FERRY_POSTGRES")
	if url == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true but FERRY_POSTGRES is not set: scripts/test starts PostgreSQL with scripts/postgres")
		}
		t.Skip("FERRY_POSTGRES not set: start a server with scripts/postgres up")
	}
	report := filepath.Join(t.TempDir(), "verify.json")
	cmd := exec.Command(binary, "verify", "-modes", "eos-db", "-messages", "2000", "-kills", "4",
		"-partitions", "4", "-workers", "2", "-every", "300ms", "-deadline", "3m", "-postgres", url, "-json", report)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("verify: %v\n%s\n%s", err, out.String(), errb.String())
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var rep verify.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 1 {
		t.Fatalf("report: %s", b)
	}
	r := rep.Results[0]
	if r.Lost != 0 || r.Duplicated != 0 || r.Processed != 2000 || r.Kills != 4 || r.Freezes < 1 {
		t.Fatalf("want every input once under 4 kills and a freeze, got %+v\n%s", r, out.String())
	}
}
