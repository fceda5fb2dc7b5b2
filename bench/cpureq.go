package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// --- CPU per request at a fixed rate ---

// Throughput under a closed loop spreads by ±10-25% here from round to
// round, which hides a 1% budget. What the budget promises is a share of
// the target's CPU: so this section holds the load fixed (open loop, a
// request every 1/rate s whatever the answers do) and measures the
// service's own CPU time per request, from the run time of all its
// threads (/proc/PID/task/*/schedstat), in many short rounds with the
// modes in rotating order. The overhead of a budget mode is, per round,
// its CPU per request over the untraced run's of the same round, less 1:
// the median of those ratios with a 95% confidence interval of the median
// (order statistics, no assumption on the distribution), beside the
// median of the budget's own estimate.

// warmup is the load each run gets before its CPU is measured: more than
// the budget's default window (1 s) takes for a full bucket to be spent at
// the bench service's hit rate.
const warmup = 3 * time.Second

// cpuRound is one run of the service at a fixed rate.
type cpuRound struct {
	cpu      time.Duration // the service's threads' run time over the load
	reqs     int           // answered
	late     int           // not sent: too many in flight
	estimate float64       // the budget's estimated overhead (JSON summary)
	sampled  float64
}

func (r cpuRound) perReq() float64 { return float64(r.cpu.Nanoseconds()) / float64(max(r.reqs, 1)) }

// cpuBench runs rounds of each mode at rate requests/s for dur each.
func (b *bench) cpuBench(ctx context.Context, service string, rounds int, rate int, dur time.Duration) (string, error) {
	modes := []httpMode{
		{"untraced", nil},
		{"ctxwatch --overhead-budget 1", []string{"--overhead-budget", "1"}},
		{"ctxwatch --overhead-budget 5", []string{"--overhead-budget", "5"}},
	}
	res := make([][]cpuRound, len(modes))
	for round := range rounds {
		for i := range modes {
			m := (round + i) % len(modes)
			r, err := b.cpuOnce(ctx, service, modes[m], rate, dur)
			if err != nil {
				return "", fmt.Errorf("cpu per request, %s: %w", modes[m].name, err)
			}
			b.log.Printf("cpu %s round %d: %d req, %.1f µs CPU/req, %d late, estimate %.4f, sampled %.3f",
				modes[m].name, round+1, r.reqs, r.perReq()/1e3, r.late, r.estimate, r.sampled)
			res[m] = append(res[m], r)
		}
	}
	var out strings.Builder
	fmt.Fprintf(&out, "bench/service at a fixed %d requests/s (open loop) from 8 keep-alive connections, %s per run after %s of load not measured, %d rounds, modes in rotating order; "+
		"CPU: the service's threads' run time (`/proc/PID/task/*/schedstat`). Overhead: per round, CPU per request over the untraced run's of the same round, "+
		"less 1; median and 95%% confidence interval of the median. The budget is a share of the CPUs the service may run on (%d here), not of its own CPU: "+
		"its unit is the extra CPU time over the run's wall time × CPUs, per round against the untraced run of the same round, beside the budget's own estimate "+
		"(the JSON summary's, over the whole watch, the load not measured included). The load not measured spends the budget's bucket, full when a watch begins: "+
		"that burst, at most budget × CPUs × window of probe time (20 ms for 1%% of 2 CPUs and the default 1 s window), is paid once per watch, "+
		"and the rounds measure what a long watch averages.\n\n",
		rate, dur, warmup, rounds, runtime.NumCPU())
	out.WriteString("| mode | CPU per request (median) | 95% CI | overhead vs untraced (median) | 95% CI | extra CPU, share of the CPUs (median) | 95% CI | budget's estimate (median) | sampled fraction |\n")
	out.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for i, m := range modes {
		per := make([]float64, len(res[i]))
		for j, r := range res[i] {
			per[j] = r.perReq() / 1e3
		}
		lo, hi := medianCI(per)
		row := fmt.Sprintf("| %s | %.1f µs | %.1f-%.1f µs |", m.name, median(per), lo, hi)
		if i == 0 {
			row += " - | - | - | - | - | - |"
		} else {
			ratio := make([]float64, len(res[i]))
			share := make([]float64, len(res[i]))
			for j, r := range res[i] {
				ratio[j] = 100 * (r.perReq()/res[0][j].perReq() - 1)
				extra := (r.perReq() - res[0][j].perReq()) * float64(r.reqs) // ns over the run
				share[j] = 100 * extra / (float64(dur.Nanoseconds()) * float64(runtime.NumCPU()))
			}
			rlo, rhi := medianCI(ratio)
			slo, shi := medianCI(share)
			est := medianOf(res[i], func(r cpuRound) float64 { return 100 * r.estimate })
			sampled := medianOf(res[i], func(r cpuRound) float64 { return r.sampled })
			row += fmt.Sprintf(" %+.1f%% | %+.1f%% to %+.1f%% | %.2f%% | %.2f%% to %.2f%% | %.2f%% | %.3f |",
				median(ratio), rlo, rhi, median(share), slo, shi, est, sampled)
		}
		out.WriteString(row + "\n")
	}
	return out.String(), nil
}

// medianCI is a 95% confidence interval of the median of xs from its order
// statistics: ranks n/2 ∓ 0.98·√n (the normal approximation of the
// binomial; 0.98 = 1.96/2).
func medianCI(xs []float64) (lo, hi float64) {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := float64(len(s))
	l := int(math.Floor(n/2 - 0.98*math.Sqrt(n)))
	h := int(math.Ceil(n/2 + 0.98*math.Sqrt(n)))
	return s[max(l, 0)], s[min(h, len(s)-1)]
}

// cpuOnce starts the service (under ctxwatch for a traced mode), loads it
// at rate for dur and returns its CPU time per request.
func (b *bench) cpuOnce(ctx context.Context, service string, m httpMode, rate int, dur time.Duration) (cpuRound, error) {
	var r cpuRound
	reportPath := filepath.Join(filepath.Dir(b.target), "cpu-report.json")
	os.Remove(reportPath)
	var cmd *exec.Cmd
	if m.args == nil {
		cmd = exec.CommandContext(ctx, service)
	} else {
		args := append([]string{"--format", "json", "--output", reportPath, "--trace-key", "type=main.traceKey"}, m.args...)
		cmd = exec.CommandContext(ctx, b.ctxwatch, append(args, "--", service)...)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return r, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return r, err
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(stdout)
	addr := ""
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "listening "); ok {
			addr = a
			break
		}
	}
	if addr == "" {
		return r, fmt.Errorf("service did not start: %s", stderr.Bytes())
	}
	go io.Copy(io.Discard, stdout)
	pid := cmd.Process.Pid
	if m.args != nil {
		if pid, err = childOf(pid); err != nil {
			return r, err
		}
	}
	url := "http://" + addr + "/order"
	// Load that is not measured first: connections made, the hit cost
	// measured, and the budget's bucket, full when the watch begins,
	// spent (a 1% budget's burst of 20 ms on 2 CPUs takes a 3 s run to
	// 1.3%). That burst is paid once per watch; the rounds measure what a
	// long watch averages, the duty cycle in its stride.
	openLoop(ctx, url, rate, warmup)
	before, err := threadsRunTime(pid)
	if err != nil {
		return r, err
	}
	r.reqs, r.late = openLoop(ctx, url, rate, dur)
	after, err := threadsRunTime(pid)
	if err != nil {
		return r, err
	}
	r.cpu = after - before
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return r, err
	}
	if err := cmd.Wait(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return r, err
		}
	}
	if m.args != nil {
		s, err := readSummary(reportPath)
		if err != nil {
			return r, fmt.Errorf("%w\n%s", err, stderr.Bytes())
		}
		r.sampled = s.SampledFraction
		if s.Budget != nil {
			r.estimate = s.Budget.Overhead
		}
	}
	return r, nil
}

// openLoop sends a request every 1/rate s for dur, each on its own
// goroutine, at most 256 in flight (one more is counted late, not sent),
// and returns how many were answered with 200.
func openLoop(ctx context.Context, url string, rate int, dur time.Duration) (ok, late int) {
	body := orderBody()
	tr := &http.Transport{MaxIdleConnsPerHost: 8, MaxConnsPerHost: 8, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		inflight = make(chan struct{}, 256)
	)
	t := time.NewTicker(time.Second / time.Duration(rate))
	defer t.Stop()
	for i, end := 0, time.Now().Add(dur); time.Now().Before(end) && ctx.Err() == nil; i++ {
		<-t.C
		select {
		case inflight <- struct{}{}:
		default:
			late++
			continue
		}
		wg.Go(func() {
			defer func() { <-inflight }()
			req, _ := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
			req.Header.Set("X-Trace-Id", traceID(0, i))
			resp, err := client.Do(req)
			if err != nil {
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return ok, late
}

// threadsRunTime is the run time of all threads of process pid so far
// (the first field of each /proc/PID/task/TID/schedstat, in ns). A Go
// program's threads live as long as it does.
func threadsRunTime(pid int) (time.Duration, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, err
	}
	var sum time.Duration
	for _, t := range tasks {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue // the thread exited
		}
		f := strings.Fields(string(data))
		if len(f) == 0 {
			continue
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("schedstat of %d/%s: %q", pid, t.Name(), data)
		}
		sum += time.Duration(ns)
	}
	return sum, nil
}

// childOf returns the one child of process pid (ctxwatch's command).
func childOf(pid int) (int, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, err
	}
	for _, t := range tasks {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		if err != nil {
			continue
		}
		if f := strings.Fields(string(data)); len(f) > 0 {
			return strconv.Atoi(f[0])
		}
	}
	return 0, fmt.Errorf("process %d has no child", pid)
}
