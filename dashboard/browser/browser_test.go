// Package browser tests ferry's dashboard in a real browser: Debian's
// chromium, driven with chromedp. It is a module of its own so that the
// library never depends on chromedp.
package browser

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/ferrykit/ferry"
	"github.com/ferrykit/ferry/dashboard"
	"github.com/ferrykit/ferry/ferrytest"
)

var update = flag.Bool("update", false, "rewrite docs/dashboard.png with this run's screenshot")

// chromium returns the browser's path, installing Debian's chromium with
// apt-get when it is missing. Without it the test skips, except under
// CI=true, where it fails.
func chromium(t *testing.T) string {
	t.Helper()
	find := func() string {
		for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
			if p, err := exec.LookPath(name); err == nil {
				return p
			}
		}
		return ""
	}
	if p := find(); p != "" {
		return p
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	var out []byte
	err := errors.New("apt-get not found")
	if _, lerr := exec.LookPath("apt-get"); lerr == nil {
		t.Log("chromium is missing: apt-get update && apt-get install chromium")
		out, err = exec.CommandContext(ctx, "apt-get", "update").CombinedOutput()
		if err == nil {
			cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "-o", "DPkg::Lock::Timeout=600", "chromium")
			cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
			out, err = cmd.CombinedOutput()
		}
	}
	if p := find(); p != "" {
		return p
	}
	msg := fmt.Sprintf("no chromium and it could not be installed: %v\n%s", err, out)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: the browser test may not be skipped)")
	}
	t.Skip(msg)
	return ""
}

// row is one partition as the page shows it.
type row struct {
	Partition string `json:"partition"`
	State     string `json:"state"`
	Committed string `json:"committed"`
	End       string `json:"end"`
	Lag       string `json:"lag"`
	Error     string `json:"error"`
}

const readRows = `Array.from(document.querySelectorAll("tr[data-partition]")).map(tr => ({
  partition: tr.dataset.partition,
  state: tr.querySelector("[data-testid=state]").textContent,
  committed: tr.querySelector("[data-testid=committed]").textContent,
  end: tr.querySelector("[data-testid=end]").textContent,
  lag: tr.querySelector("[data-testid=lag]").textContent,
  error: tr.querySelector("[data-testid=error]").textContent,
}))`

// An app on the embedded cluster consumes three partitions of 20 messages;
// every batch of partition 1 fails. The page, loaded in chromium, shows
// partitions 0 and 2 owned and consumed to their end, partition 1 retrying
// with its attempt and error, committed at 0 with a lag of 20 — what the
// app's stats say — and the throughput chart.
func TestDashboardInBrowser(t *testing.T) {
	browser := chromium(t)
	c, err := ferrytest.StartEmbedded()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const topic, group = "orders", "billing"
	if err := c.CreateTopic(ctx, topic, 3); err != nil {
		t.Fatal(err)
	}
	for p := range int32(3) {
		if _, err := c.ProduceN(ctx, topic, p, 20); err != nil {
			t.Fatal(err)
		}
	}
	board := dashboard.ForApp()
	handle := func(_ context.Context, b *ferry.Batch) error {
		if b.Partition == 1 {
			return errors.New("payment service unavailable")
		}
		return nil
	}
	app, err := ferry.New(ferry.Brokers(c.Brokers()...), ferry.RouteFunc(group, topic, handle),
		ferry.Logger(slog.New(slog.DiscardHandler)), board.Option())
	if err != nil {
		t.Fatal(err)
	}
	board.Watch(app)
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = app.Run(runCtx) })
	defer func() { stop(); wg.Wait() }()
	srv := httptest.NewServer(dashboard.Handler(board.Snapshot))
	defer srv.Close()

	// The workload settles: 0 and 2 committed to their end, 1 failing.
	settled := func() bool {
		s := app.Stats()
		if len(s.Groups) != 1 || len(s.Groups[0].Partitions) != 3 {
			return false
		}
		p := s.Groups[0].Partitions
		return p[0].CommittedOffset == 20 && p[2].CommittedOffset == 20 && !p[1].FailingSince.IsZero()
	}
	if err := ferrytest.WaitFor(ctx, settled); err != nil {
		t.Fatalf("the workload did not settle: %+v", app.Stats())
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox,
		chromedp.WindowSize(1100, 560), chromedp.Flag("disable-dev-shm-usage", true))
	allocCtx, closeAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer closeAlloc()
	page, closePage := chromedp.NewContext(allocCtx)
	defer closePage()
	if err := chromedp.Do(page, chromedp.Navigate(srv.URL+"/")); err != nil {
		t.Fatal(err)
	}
	// Until the page shows partition 1 retrying with its error (a few
	// polls), then compare every row with the app's stats.
	var rows []row
	shown := func() bool {
		var err error
		if rows, err = chromedp.Run(page, chromedp.Evaluate[[]row](readRows)); err != nil {
			t.Fatal(err)
		}
		return len(rows) == 3 && rows[1].Error != "" && rows[1].State != "owned"
	}
	if err := ferrytest.WaitFor(ctx, shown); err != nil {
		t.Fatalf("the page never showed the retrying partition: %+v", rows)
	}
	stats := app.Stats().Groups[0].Partitions
	for i, want := range []struct{ state, err string }{{"owned", ""}, {"retrying (attempt", "payment service unavailable"}, {"owned", ""}} {
		r, s := rows[i], stats[i]
		if r.Partition != fmt.Sprintf("%s/%d", topic, s.Partition) {
			t.Fatalf("row %d is %s", i, r.Partition)
		}
		if len(r.State) < len(want.state) || r.State[:len(want.state)] != want.state || r.Error != want.err {
			t.Errorf("%s: page shows state %q, error %q; want %q…, %q", r.Partition, r.State, r.Error, want.state, want.err)
		}
		if r.Committed != fmt.Sprint(s.CommittedOffset) || r.End != fmt.Sprint(s.EndOffset) || r.Lag != fmt.Sprint(s.Lag) {
			t.Errorf("%s: page shows committed %s end %s lag %s; the app's stats say %d, %d, %d",
				r.Partition, r.Committed, r.End, r.Lag, s.CommittedOffset, s.EndOffset, s.Lag)
		}
	}
	chart, err := chromedp.Run(page, chromedp.Evaluate[int](`document.querySelectorAll("svg[data-testid=throughput]").length`))
	if err != nil || chart != 1 {
		t.Errorf("throughput chart: %d, %v", chart, err)
	}

	// Messages keep coming to partitions 0 and 2 for a few seconds: the
	// chart draws their rate.
	for range 8 {
		for _, p := range []int32{0, 2} {
			if _, err := c.ProduceN(ctx, topic, p, 25); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	drawn := func() bool {
		n, err := chromedp.Run(page, chromedp.Evaluate[int](`document.querySelector("svg[data-testid=throughput] polyline").points.length`))
		return err == nil && n >= 3
	}
	if err := ferrytest.WaitFor(ctx, drawn); err != nil {
		t.Errorf("the throughput chart draws no line")
	}
	png, err := chromedp.Run(page, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard.png")
	if *update {
		path = filepath.Join("..", "..", "docs", "dashboard.png")
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}
