package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// ferry cluster -port N listens on 127.0.0.1:N, prints that address as the
// first line of stdout, and serves Kafka there; a second one asked for the
// same port fails with an error naming the address instead of picking
// another port.
func TestClusterListensOnThePortAsked(t *testing.T) {
	port := freePort(t)
	want := fmt.Sprintf("127.0.0.1:%d", port)

	ctx, cancel := context.WithCancel(context.Background())
	out, w := io.Pipe()
	done := make(chan error, 1)
	go func() {
		var errb bytes.Buffer
		err := run(ctx, []string{"cluster", "-port", fmt.Sprint(port)}, w, &errb)
		w.Close()
		done <- err
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ferry cluster: %v", err)
		}
	}()
	lines := make(chan string, 1)
	go func() {
		first, _ := bufio.NewReader(out).ReadString('\n')
		lines <- strings.TrimSpace(first)
		io.Copy(io.Discard, out)
	}()
	select {
	case got := <-lines:
		if got != want {
			t.Fatalf("ferry cluster -port %d printed %q, want %q", port, got, want)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("ferry cluster printed no address within 30s")
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(want))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer pcancel()
	if err := cl.Ping(pctx); err != nil {
		t.Fatalf("no Kafka at %s: %v", want, err)
	}

	// The port is taken now: a second cluster refuses rather than
	// listening somewhere else.
	var out2, errb2 bytes.Buffer
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	err = run(ctx2, []string{"cluster", "-port", fmt.Sprint(port)}, &out2, &errb2)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("a second ferry cluster -port %d: error %v (printed %q), want one naming %s", port, err, out2.String(), want)
	}
}

// freePort returns a port on 127.0.0.1 nothing listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
