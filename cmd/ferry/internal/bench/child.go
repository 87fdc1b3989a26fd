package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// Child runs a contender as a process of its own — argv is its command
// line; it prints its Result as one JSON line — under `self rusage` (see
// Rusage), which measures its peak resident set.
func Child(ctx context.Context, self string, argv ...string) (Result, error) {
	out, usage, err := underRusage(ctx, self, argv...)
	if err != nil {
		return Result{}, err
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var r Result
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil || r.Name == "" {
		return Result{}, fmt.Errorf("%s printed %q, want a JSON result: %v", argv[0], out, err)
	}
	r.PeakRSS = usage.PeakRSS
	return r, nil
}

// underRusage runs argv under `self rusage` and returns its standard output
// and its resource usage (PeakRSS and CPU).
func underRusage(ctx context.Context, self string, argv ...string) (string, Result, error) {
	dir, err := os.MkdirTemp("", "ferry-rusage")
	if err != nil {
		return "", Result{}, err
	}
	defer os.RemoveAll(dir)
	report := filepath.Join(dir, "rusage.json")
	cmd := exec.CommandContext(ctx, self, append([]string{"rusage", report}, argv...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", Result{}, fmt.Errorf("%s: %v\n%s", strings.Join(argv, " "), err, errb.String())
	}
	b, err := os.ReadFile(report)
	if err != nil {
		return "", Result{}, err
	}
	var usage Result
	if err := json.Unmarshal(b, &usage); err != nil {
		return "", Result{}, fmt.Errorf("%s's resource usage: %v", argv[0], err)
	}
	return out.String(), usage, nil
}

// Rusage runs argv, passing its output through, and writes its peak
// resident set and CPU time (with the children it waited for) to the file
// report as JSON. The bench cannot measure its children's peak itself: a
// child started with vfork and exec (as os/exec does) starts its ru_maxrss
// at its parent's peak. Started from this small wrapper instead, it starts
// at the wrapper's few MiB.
func Rusage(ctx context.Context, report string, argv []string) error {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	runErr := cmd.Run()
	if cmd.ProcessState == nil {
		return runErr
	}
	var rss int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = ru.Maxrss << 10 // Linux counts KiB
	}
	b, err := json.Marshal(Result{PeakRSS: rss, CPU: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()})
	if err != nil {
		return err
	}
	if err := os.WriteFile(report, b, 0o644); err != nil {
		return err
	}
	return runErr
}
