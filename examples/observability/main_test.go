package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// The example serves its metrics and health while it consumes, and stops
// cleanly.
func TestExampleServesMetricsAndHealth(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	listening := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, "127.0.0.1:0", listening) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	base := "http://" + <-listening
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, _ := get(t, base+"/readyz")
		_, metrics := get(t, base+"/metrics")
		if code == http.StatusOK && strings.Contains(metrics, `ferry_messages_consumed_total{group="fulfilment"`) &&
			strings.Contains(metrics, "ferry_retries_total") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz %d; /metrics without consumed messages and a retry:\n%.3000s", code, metrics)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code, body := get(t, base+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
}
