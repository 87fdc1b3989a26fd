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
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	InFlight  string `json:"in_flight"`
	Error     string `json:"error"`
	Buttons   string `json:"buttons"` // the actions offered, space-separated
}

const readRows = `Array.from(document.querySelectorAll("tr[data-partition]")).map(tr => ({
  partition: tr.dataset.partition,
  state: tr.querySelector("[data-testid=state]").textContent,
  committed: tr.querySelector("[data-testid=committed]").textContent,
  end: tr.querySelector("[data-testid=end]").textContent,
  lag: tr.querySelector("[data-testid=lag]").textContent,
  in_flight: tr.querySelector("[data-testid=in-flight]").textContent,
  error: tr.querySelector("[data-testid=error]").textContent,
  buttons: Array.from(tr.querySelectorAll("button[data-action]")).map(b => b.dataset.action).join(" "),
}))`

// An app on the embedded cluster consumes three partitions of 20 messages;
// every batch of partition 1 fails, and partition 0 holds the messages that
// come after its first 20. Two pages show it, loaded in chromium:
//
//   - the read-only page offers no button, and its action requests are
//     refused (O6);
//   - the page with actions shows what the app's stats say — partitions 0
//     and 2 owned and consumed, partition 1 retrying with its attempt and
//     error, committed at 0 with a lag of 20, partition 0's messages in
//     flight, the member's id (X2); its pause button on partition 2 really
//     pauses it (nothing more is consumed) and its resume button resumes it
//     (O4); the throughput chart draws the rate; and its skip button moves
//     partition 1 past its failing messages (O5).
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
	release := make(chan struct{})
	var consumed2 sync.Map // offsets of partition 2 handed to the consumer
	handle := func(ctx context.Context, b *ferry.Batch) error {
		switch b.Partition {
		case 0:
			if b.Messages[0].Offset >= 20 {
				select {
				case <-release:
				case <-ctx.Done():
				}
			}
		case 1:
			return errors.New("payment service unavailable")
		case 2:
			for _, m := range b.Messages {
				consumed2.Store(m.Offset, true)
			}
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
	var releaseOnce sync.Once
	letGo := func() { releaseOnce.Do(func() { close(release) }) }
	defer func() { letGo(); stop(); wg.Wait() }()
	readOnly := httptest.NewServer(dashboard.Handler(board.Snapshot))
	defer readOnly.Close()
	withActions := httptest.NewServer(dashboard.Handler(board.Snapshot, dashboard.WithActions(app)))
	defer withActions.Close()

	partitions := func() []ferry.PartitionStats {
		s := app.Stats()
		if len(s.Groups) != 1 || len(s.Groups[0].Partitions) != 3 {
			return nil
		}
		return s.Groups[0].Partitions
	}
	// The workload settles: 0 and 2 committed to their end, 1 failing;
	// then partition 0 gets 5 messages that stay in flight.
	settled := func() bool {
		p := partitions()
		return p != nil && p[0].CommittedOffset == 20 && p[2].CommittedOffset == 20 && !p[1].FailingSince.IsZero()
	}
	if err := ferrytest.WaitFor(ctx, settled); err != nil {
		t.Fatalf("the workload did not settle: %+v", app.Stats())
	}
	if _, err := c.ProduceN(ctx, topic, 0, 5); err != nil {
		t.Fatal(err)
	}
	if err := ferrytest.WaitFor(ctx, func() bool { p := partitions(); return p != nil && p[0].InFlight > 0 }); err != nil {
		t.Fatalf("partition 0's messages never in flight: %+v", app.Stats())
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox,
		chromedp.WindowSize(1280, 600), chromedp.Flag("disable-dev-shm-usage", true))
	allocCtx, closeAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer closeAlloc()
	page, closePage := chromedp.NewContext(allocCtx)
	defer closePage()
	rowsOf := func() []row {
		rows, err := chromedp.Run(page, chromedp.Evaluate[[]row](readRows))
		if err != nil {
			t.Fatal(err)
		}
		return rows
	}
	var rows []row
	// shown waits until the page shows partition 1 retrying with its error
	// (a few polls).
	shown := func(what string) {
		t.Helper()
		if err := ferrytest.WaitFor(ctx, func() bool {
			rows = rowsOf()
			return len(rows) == 3 && rows[1].Error != "" && rows[1].State != "owned"
		}); err != nil {
			t.Fatalf("%s never showed the retrying partition: %+v", what, rows)
		}
	}

	// The read-only page: no buttons; its action requests are refused.
	if err := chromedp.Do(page, chromedp.Navigate(readOnly.URL+"/")); err != nil {
		t.Fatal(err)
	}
	shown("the read-only page")
	for _, r := range rows {
		if r.Buttons != "" {
			t.Errorf("the read-only page offers %q on %s", r.Buttons, r.Partition)
		}
	}
	status, err := chromedp.Run(page, chromedp.Evaluate[int](`fetch("actions/pause", {method: "POST",
  headers: {"Content-Type": "application/json", "X-Ferry-Token": document.querySelector("meta[name=ferry-token]").content},
  body: JSON.stringify({group: "billing", topic: "orders", partition: 2})}).then(r => r.status)`,
		chromedp.EvalAwaitPromise))
	if err != nil || status != http.StatusForbidden {
		t.Errorf("the read-only page's pause request: %d, %v; want 403", status, err)
	}
	if p := partitions(); p[2].PausedByUser {
		t.Fatal("a read-only page paused a partition")
	}

	// The page with actions: every row as the app's stats say.
	if err := chromedp.Do(page, chromedp.Navigate(withActions.URL+"/")); err != nil {
		t.Fatal(err)
	}
	shown("the page with actions")
	stats := app.Stats().Groups[0]
	member, err := chromedp.Run(page, chromedp.Evaluate[string](`document.querySelector(".member").textContent`))
	if err != nil || stats.MemberID == "" || !strings.Contains(member, stats.MemberID) {
		t.Errorf("the page shows %q, %v; the member id is %q", member, err, stats.MemberID)
	}
	for i, want := range []struct{ state, err string }{{"owned", ""}, {"retrying (attempt", "payment service unavailable"}, {"owned", ""}} {
		r, s := rows[i], stats.Partitions[i]
		if r.Partition != fmt.Sprintf("%s/%d", topic, s.Partition) {
			t.Fatalf("row %d is %s", i, r.Partition)
		}
		if !strings.HasPrefix(r.State, want.state) || r.Error != want.err {
			t.Errorf("%s: page shows state %q, error %q; want %q…, %q", r.Partition, r.State, r.Error, want.state, want.err)
		}
		if r.Committed != fmt.Sprint(s.CommittedOffset) || r.End != fmt.Sprint(s.EndOffset) || r.Lag != fmt.Sprint(s.Lag) {
			t.Errorf("%s: page shows committed %s end %s lag %s; the app's stats say %d, %d, %d",
				r.Partition, r.Committed, r.End, r.Lag, s.CommittedOffset, s.EndOffset, s.Lag)
		}
		if n, _, _ := strings.Cut(r.InFlight, " "); n != fmt.Sprint(s.InFlight) {
			t.Errorf("%s: page shows %q in flight; the app's stats say %d", r.Partition, r.InFlight, s.InFlight)
		}
		if r.Buttons != "pause seek" {
			t.Errorf("%s: page offers %q, want pause and seek", r.Partition, r.Buttons)
		}
	}
	if s := stats.Partitions[0]; s.InFlight != 5 || s.ConsumingSince.IsZero() || !strings.Contains(rows[0].InFlight, " s") {
		t.Errorf("partition 0: stats say %d in flight since %v, the page %q; want 5 and since when", s.InFlight, s.ConsumingSince, rows[0].InFlight)
	}

	// Pause partition 2 with its button: the app pauses it, the page says
	// so, and nothing more of it is consumed.
	const row2 = `tr[data-partition="orders/2"] `
	if err := chromedp.Do(page, chromedp.Click(chromedp.CSS(row2+`button[data-action=pause]`))); err != nil {
		t.Fatal(err)
	}
	if err := ferrytest.WaitFor(ctx, func() bool { return partitions()[2].PausedByUser }); err != nil {
		t.Fatal("the pause button did not pause partition 2")
	}
	if err := ferrytest.WaitFor(ctx, func() bool {
		rows = rowsOf()
		return rows[2].State == "paused until resumed" && rows[2].Buttons == "resume seek"
	}); err != nil {
		t.Fatalf("the page never showed partition 2 paused: %+v", rows[2])
	}
	if _, err := c.ProduceN(ctx, topic, 2, 10); err != nil { // offsets 20..29
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if _, seen := consumed2.Load(int64(20)); seen || partitions()[2].ProcessedOffset != 20 {
		t.Fatalf("paused partition 2 consumed on: %+v", partitions()[2])
	}
	if err := chromedp.Do(page, chromedp.Click(chromedp.CSS(row2+`button[data-action=resume]`))); err != nil {
		t.Fatal(err)
	}
	if err := ferrytest.WaitFor(ctx, func() bool { p := partitions()[2]; return !p.PausedByUser && p.CommittedOffset == 30 }); err != nil {
		t.Fatalf("the resume button did not resume partition 2: %+v", partitions()[2])
	}

	// Messages keep coming to partition 2 for a few seconds: the chart
	// draws their rate.
	for range 8 {
		if _, err := c.ProduceN(ctx, topic, 2, 25); err != nil {
			t.Fatal(err)
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

	// Skip partition 1 past the messages that keep failing (O5): type the
	// offset, click skip; the app commits it and stops retrying.
	const row1 = `tr[data-partition="orders/1"] `
	if err := chromedp.Do(page, chromedp.SendKeys(chromedp.CSS(row1+`input[data-testid=seek-offset]`), "20"),
		chromedp.Click(chromedp.CSS(row1+`button[data-action=seek]`))); err != nil {
		t.Fatal(err)
	}
	if err := ferrytest.WaitFor(ctx, func() bool { p := partitions()[1]; return p.CommittedOffset == 20 && p.FailingSince.IsZero() }); err != nil {
		t.Fatalf("the skip button did not move partition 1: %+v", partitions()[1])
	}
	if err := ferrytest.WaitFor(ctx, func() bool { rows = rowsOf(); return rows[1].State == "owned" && rows[1].Lag == "0" }); err != nil {
		t.Errorf("the page never showed partition 1 skipped: %+v", rows[1])
	}
}
