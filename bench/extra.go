package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/arch/x86/x86asm"

	"github.com/ctxwatch/ctxwatch/internal/target"
	"github.com/ctxwatch/ctxwatch/internal/uprobe"
)

// report is the part of ctxwatch's JSON lines the sections below read.
type report struct {
	Type            string  `json:"type"`
	DurationS       float64 `json:"duration_s"`
	Events          uint64  `json:"events"`
	EventsLost      uint64  `json:"events_lost"`
	ProbeHits       uint64  `json:"probe_hits"`
	SampledFraction float64 `json:"sampled_fraction"`
	Budget          *struct {
		Overhead float64 `json:"estimated_overhead"`
		Detaches int     `json:"detaches"`
	} `json:"budget"`
	Breaks []struct {
		Kind  string `json:"kind"`
		Count uint64 `json:"count"`
		Site  struct {
			Function string `json:"function"`
			Line     int    `json:"line"`
		} `json:"site"`
	} `json:"breaks"`
}

func readSummary(path string) (report, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return report{}, err
	}
	for line := range strings.Lines(string(data)) {
		var r report
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return report{}, fmt.Errorf("ctxwatch report: %w", err)
		}
		if r.Type == "summary" {
			return r, nil
		}
	}
	return report{}, errors.New("ctxwatch report has no summary line")
}

// --- per-hit cost, as ctxwatch measures it at start-up ---

func (b *bench) hitCost() (string, error) {
	hc, err := uprobe.MeasureHitCost(false)
	if err != nil {
		return "", err
	}
	out := fmt.Sprintf("Per-hit cost as `--overhead-budget` measures it at start-up (empty program, uprobe limited to the process, thread CPU time): "+
		"%.1f µs at a PUSHQ BP (emulated), %.1f µs at a RET (single-stepped). "+
		"A duty cycle's cost per probe, one link per probe: %.0f µs to attach, %.0f µs to detach", us(hc.Emulated), us(hc.Stepped), us(hc.Attach), us(hc.Detach))
	if !uprobe.MultiLinks() {
		return out + " (no uprobe_multi links on this kernel).\n", nil
	}
	mc, err := uprobe.MeasureHitCost(true)
	if err != nil {
		return "", err
	}
	return out + fmt.Sprintf("; with a uprobe_multi link (what ctxwatch uses on this kernel): %.0f µs and %.0f µs.\n", us(mc.Attach), us(mc.Detach)), nil
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// --- the HTTP service under load ---

type httpMode struct {
	name string
	args []string // ctxwatch flags; nil: untraced
}

type httpResult struct {
	reqs          int
	errs          int
	dur           time.Duration
	p50, p99      time.Duration
	sampled       float64
	lost          uint64
	breakSites    int
	firstBreakSec float64
	detaches      int
	overhead      float64
}

// httpBench loads bench/service untraced, under ctxwatch and under
// ctxwatch with a 1% budget, rounds times each, modes interleaved.
func (b *bench) httpBench(ctx context.Context, service string, rounds int, dur time.Duration, conc int) (string, error) {
	modes := []httpMode{
		{"untraced", nil},
		{"ctxwatch", []string{"--overhead-budget", "0"}},
		{"ctxwatch --overhead-budget 1", []string{"--overhead-budget", "1"}},
	}
	res := make([][]httpResult, len(modes))
	for round := range rounds {
		for i := range modes {
			m := (round + i) % len(modes)
			r, err := b.httpOnce(ctx, service, modes[m], dur, conc)
			if err != nil {
				return "", fmt.Errorf("http %s: %w", modes[m].name, err)
			}
			b.log.Printf("http %s round %d: %.0f req/s p50 %s p99 %s sampled %.3f detaches %d overhead %.4f", modes[m].name, round+1,
				float64(r.reqs)/r.dur.Seconds(), r.p50, r.p99, r.sampled, r.detaches, r.overhead)
			res[m] = append(res[m], r)
		}
	}
	var out strings.Builder
	fmt.Fprintf(&out, "HTTP service (bench/service: JSON decode, SHA-256, JSON encode, WithTimeout + WithValue + WithCancel, one goroutine per request; "+
		"every 10th request's goroutine loses the trace), %d keep-alive connections on loopback, %s per run, median of %d runs per mode, modes interleaved.\n\n",
		conc, dur, rounds)
	out.WriteString("| mode | req/s | p50 | p99 | throughput vs untraced | sampled fraction | events lost | break sites found |\n")
	out.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|\n")
	base := 0.0
	for i, m := range modes {
		rps := medianOf(res[i], func(r httpResult) float64 { return float64(r.reqs) / r.dur.Seconds() })
		p50 := medianOf(res[i], func(r httpResult) float64 { return float64(r.p50) })
		p99 := medianOf(res[i], func(r httpResult) float64 { return float64(r.p99) })
		if i == 0 {
			base = rps
		}
		var lost uint64
		sites := 0
		sampled := "-"
		if m.args != nil {
			for _, r := range res[i] {
				lost += r.lost
				sites = max(sites, r.breakSites)
			}
			sampled = fmt.Sprintf("%.3f", medianOf(res[i], func(r httpResult) float64 { return r.sampled }))
		}
		siteCol, lostCol := "-", "-"
		if m.args != nil {
			siteCol, lostCol = fmt.Sprintf("%d of 1", sites), strconv.FormatUint(lost, 10)
		}
		fmt.Fprintf(&out, "| %s | %.0f | %s | %s | %+.1f%% | %s | %s | %s |\n", m.name, rps,
			time.Duration(p50).Round(time.Microsecond), time.Duration(p99).Round(time.Microsecond),
			100*(rps/base-1), sampled, lostCol, siteCol)
	}
	return out.String(), nil
}

func medianOf[T any](xs []T, f func(T) float64) float64 {
	var v []float64
	for _, x := range xs {
		v = append(v, f(x))
	}
	return median(v)
}

func (b *bench) httpOnce(ctx context.Context, service string, m httpMode, dur time.Duration, conc int) (httpResult, error) {
	var r httpResult
	reportPath := filepath.Join(filepath.Dir(b.target), "http-report.json")
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
	r = loadgen(ctx, "http://"+addr+"/order", conc, dur, 2_000_000)
	// ctxwatch passes SIGTERM on to the command; the service shuts down.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return r, err
	}
	if err := cmd.Wait(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return r, err
		}
	}
	if r.errs > 0 {
		return r, fmt.Errorf("%d requests failed", r.errs)
	}
	if m.args != nil {
		s, err := readSummary(reportPath)
		if err != nil {
			return r, fmt.Errorf("%w\n%s", err, stderr.Bytes())
		}
		r.sampled, r.lost = s.SampledFraction, s.EventsLost
		if s.Budget != nil {
			r.detaches, r.overhead = s.Budget.Detaches, s.Budget.Overhead
		}
		for _, br := range s.Breaks {
			if br.Kind == "lost-at-spawn" && br.Site.Function == "main.audit" {
				r.breakSites++
			}
		}
	}
	return r, nil
}

// loadgen sends POST requests from conc keep-alive connections until dur
// has passed or max requests were sent, and returns the latencies.
func loadgen(ctx context.Context, url string, conc int, dur time.Duration, max int) httpResult {
	body := orderBody()
	tr := &http.Transport{MaxIdleConnsPerHost: conc, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var (
		mu   sync.Mutex
		lat  []time.Duration
		errs int
		sent int
	)
	start := time.Now()
	end := start.Add(dur)
	var wg sync.WaitGroup
	for w := range conc {
		wg.Go(func() {
			var mine []time.Duration
			bad := 0
			for i := 0; time.Now().Before(end) && ctx.Err() == nil; i++ {
				mu.Lock()
				if sent >= max {
					mu.Unlock()
					break
				}
				sent++
				mu.Unlock()
				req, _ := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
				req.Header.Set("X-Trace-Id", traceID(w, i))
				t0 := time.Now()
				resp, err := client.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = errors.New(resp.Status)
					}
				}
				if err != nil {
					bad++
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			errs += bad
			mu.Unlock()
		})
	}
	wg.Wait()
	r := httpResult{reqs: len(lat), errs: errs, dur: time.Since(start)}
	slices.Sort(lat)
	if len(lat) > 0 {
		r.p50 = lat[len(lat)/2]
		r.p99 = lat[len(lat)*99/100]
	}
	return r
}

func traceID(w, i int) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("%d/%d", w, i)))
	return hex.EncodeToString(h[:16])
}

func orderBody() []byte {
	type item struct {
		ID    int     `json:"id"`
		Name  string  `json:"name"`
		Price float64 `json:"price"`
	}
	o := struct {
		Customer string `json:"customer"`
		Items    []item `json:"items"`
	}{Customer: "bench"}
	for i := range 40 {
		o.Items = append(o.Items, item{ID: i, Name: fmt.Sprintf("item-%d", i), Price: float64(i) * 1.25})
	}
	data, _ := json.Marshal(o)
	return data
}

// --- the agent over the storm example ---

// stormBench runs examples/storm under ctxwatch and measures ctxwatch's own
// CPU time and peak RSS from /proc while it runs.
func (b *bench) stormBench(ctx context.Context, storm string, n int) (string, error) {
	reportPath := filepath.Join(filepath.Dir(b.target), "storm-report.json")
	os.Remove(reportPath)
	cmd := exec.CommandContext(ctx, b.ctxwatch, "--format", "json", "--output", reportPath,
		"--trace-key", "type=main.traceKey", "--", storm, "-n", strconv.Itoa(n), "-lose", "4")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return "", err
	}
	var cpu time.Duration
	var hwm uint64
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	pid := cmd.Process.Pid
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var err error
loop:
	for {
		select {
		case err = <-done:
			break loop
		case <-tick.C:
			if c, ok := procCPU(pid); ok {
				cpu = c
			}
			if h, ok := procHWM(pid); ok {
				hwm = h
			}
		}
	}
	wall := time.Since(start)
	if err != nil {
		return "", fmt.Errorf("ctxwatch -- storm: %w\n%s", err, stderr.Bytes())
	}
	s, err := readSummary(reportPath)
	if err != nil {
		return "", err
	}
	var out strings.Builder
	fmt.Fprintf(&out, "Agent over `examples/storm -n %d -lose 4` (goroutines spawned as fast as the target can, each judged: two events per spawn), "+
		"ctxwatch's own CPU and peak RSS sampled from /proc every 10 ms.\n\n", n)
	out.WriteString("| wall | target run (summary) | events | events/s | events lost | ctxwatch CPU | ctxwatch CPU per event | ctxwatch peak RSS |\n")
	out.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	fmt.Fprintf(&out, "| %.2fs | %.2fs | %d | %.0f | %d | %.2fs | %.1f µs | %.1f MB |\n",
		wall.Seconds(), s.DurationS, s.Events, float64(s.Events)/s.DurationS, s.EventsLost,
		cpu.Seconds(), us(cpu)/float64(max(s.Events, 1)), float64(hwm)/1024)
	return out.String(), nil
}

// procCPU is the user+system time of process pid.
func procCPU(pid int) (time.Duration, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	_, rest, ok := strings.Cut(string(data), ") ")
	if !ok {
		return 0, false
	}
	f := strings.Fields(rest) // field 3 (state) is f[0]; utime is field 14
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	const hz = 100 // USER_HZ
	return time.Duration(ut+st) * time.Second / hz, true
}

// procHWM is the peak RSS of process pid, in kB.
func procHWM(pid int) (uint64, bool) { return procStatus(pid, "VmHWM:") }

// --- attach time on a large binary ---

// bigBinary builds bench/bigbin (a module of its own: Kubernetes client-go,
// AWS and Azure SDKs, gRPC) into the user's cache directory, once.
func bigBinary(ctx context.Context) (string, error) {
	src, err := filepath.Abs("bench/bigbin")
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, f := range []string{"main.go", "go.mod", "go.sum"} {
		data, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			return "", fmt.Errorf("read bench/bigbin (run bench from the repository root): %w", err)
		}
		h.Write(data)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	exe := filepath.Join(cache, "ctxwatch-bench", "bigbin-"+hex.EncodeToString(h.Sum(nil))[:12])
	if _, err := os.Stat(exe); err == nil {
		return exe, nil
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", exe, ".")
	cmd.Dir = src
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build bench/bigbin: %w\n%s", err, stderr.Bytes())
	}
	return exe, nil
}

// attachTarget is a running program ctxwatch --pid attaches to.
type attachTarget struct {
	name string   // for the table
	exe  string   // its executable
	args []string // its command line
}

// jaegerBinary is the Jaeger v2 that make jaeger builds into
// $CTXWATCH_CACHE: a real service's binary, 121 MB with DWARF.
func jaegerBinary() (string, error) {
	cache := os.Getenv("CTXWATCH_CACHE")
	if cache == "" {
		cache = "/var/cache/ctxwatch"
	}
	exe := filepath.Join(cache, "jaeger-v1.76.0", "jaeger")
	if _, err := os.Stat(exe); err != nil {
		return "", fmt.Errorf("the attach table's real binary is Jaeger v2: run make jaeger (%w)", err)
	}
	return exe, nil
}

// jaegerConfig runs Jaeger's all-in-one pipeline on ephemeral loopback
// ports: the bench only attaches to it.
const jaegerConfig = `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:0
    grpc:
      endpoint: 127.0.0.1:0
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 1000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:0
      http:
        endpoint: 127.0.0.1:0
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`

// attachBench times, runs times per target, from starting ctxwatch --pid
// on each running target to its "watching pid" line (probes attached).
func (b *bench) attachBench(ctx context.Context, targets []attachTarget, runs int) (string, error) {
	// Without a budget, and with --pid's default one, whose cost is
	// measured once the probes are in.
	variants := []struct {
		name string
		args []string
	}{
		{"--overhead-budget 0", []string{"--overhead-budget", "0"}},
		{"default (--overhead-budget 5)", nil},
	}
	var rows strings.Builder
	for _, tg := range targets {
		st, err := os.Stat(tg.exe)
		if err != nil {
			return "", err
		}
		target := exec.CommandContext(ctx, tg.exe, tg.args...)
		if err := target.Start(); err != nil {
			return "", fmt.Errorf("start %s: %w", tg.name, err)
		}
		time.Sleep(time.Second) // its runtime and services up
		probes := ""
		for _, v := range variants {
			var times []float64
			for range runs {
				args := append([]string{"--verbose", "--duration", "300ms", "--format", "json", "--output", os.DevNull,
					"--pid", strconv.Itoa(target.Process.Pid)}, v.args...)
				cmd := exec.CommandContext(ctx, b.ctxwatch, args...)
				pipe, err := cmd.StderrPipe()
				if err != nil {
					return "", err
				}
				start := time.Now()
				if err := cmd.Start(); err != nil {
					return "", err
				}
				sc := bufio.NewScanner(pipe)
				var took time.Duration
				var lines []string
				for sc.Scan() {
					lines = append(lines, sc.Text())
					if strings.Contains(sc.Text(), "watching pid") {
						took = time.Since(start)
						if _, p, ok := strings.Cut(sc.Text(), "): "); ok {
							probes = p
						}
					}
				}
				if err := cmd.Wait(); err != nil || took == 0 {
					target.Process.Kill()
					target.Wait()
					return "", fmt.Errorf("ctxwatch --pid on %s: %v\n%s", tg.name, err, strings.Join(lines, "\n"))
				}
				times = append(times, took.Seconds()*1000)
			}
			fmt.Fprintf(&rows, "| %s | %.0f MB | %s | %s | %.0f ms | %.0f ms | %.0f ms |\n", tg.name, float64(st.Size())/1e6, probes, v.name,
				median(times), slices.Min(times), slices.Max(times))
		}
		target.Process.Kill()
		target.Wait()
	}
	var out strings.Builder
	fmt.Fprintf(&out, "Attach to a running program: time from starting `ctxwatch --pid` to its \"watching pid\" line, median of %d. "+
		"Jaeger v2 is a real service (make jaeger); bench/bigbin links client-go, AWS and Azure SDKs and gRPC. Both have DWARF, "+
		"which ctxwatch does not read for a Go and OTel SDK release its layout table knows.\n\n", runs)
	out.WriteString("| binary | size | probes | budget | start to probes attached (median) | min | max |\n|---|---:|---|---|---:|---:|---:|\n")
	out.WriteString(rows.String())
	return out.String(), nil
}

// --- where the spawn probe could go ---

// spawnProbeBench compares, on the spawn op, an empty program on
// runtime.newproc1's RETs (where ctxwatch's spawn probe is: RET is
// single-stepped) with one on the CALL of runtime.runqput in
// runtime.newproc.func1 (a CALL is emulated; the new g is in RBX there).
func (b *bench) spawnProbeBench(ctx context.Context, bin *target.Binary, runs, n int) (string, error) {
	callOff, err := runqputCall(b.target, bin)
	if err != nil {
		return "", err
	}
	var rets []uint64
	fn, err := bin.Func("runtime.newproc1")
	if err != nil {
		return "", err
	}
	addrs, err := bin.Returns(fn)
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		off, err := bin.FileOffset(a)
		if err != nil {
			return "", err
		}
		rets = append(rets, off)
	}
	type variant struct {
		name    string
		offsets []uint64
	}
	variants := []variant{{"untraced", nil}, {"empty program on newproc1's RET (the fallback)", rets}, {"empty program on CALL runqput in newproc.func1 (ctxwatch)", []uint64{callOff}}}
	samples := make([][]float64, len(variants))
	for round := range runs {
		for i := range variants {
			v := variants[(round+i)%len(variants)]
			var detach func()
			if v.offsets != nil {
				if detach, err = b.attachEmpty(v.offsets); err != nil {
					return "", err
				}
			}
			out, err := exec.CommandContext(ctx, b.target, "-op", "spawn", "-n", strconv.Itoa(n)).Output()
			if detach != nil {
				detach()
			}
			if err != nil {
				return "", err
			}
			ns, err := parseNsOp(out)
			if err != nil {
				return "", err
			}
			samples[(round+i)%len(variants)] = append(samples[(round+i)%len(variants)], ns)
		}
	}
	var out strings.Builder
	fmt.Fprintf(&out, "Goroutine spawn (N %d, median of %d runs, interleaved) with an empty program where the spawn probe is and where it could be:\n\n", n, runs)
	out.WriteString("| probe place | ns/op | vs CALL runqput |\n|---|---:|---:|\n")
	call := median(samples[2])
	for i, v := range variants {
		fmt.Fprintf(&out, "| %s | %.1f | %.2f |\n", v.name, median(samples[i]), median(samples[i])/call)
	}
	return out.String(), nil
}

// runqputCall returns the file offset of the CALL runtime.runqput in
// runtime.newproc.func1.
func runqputCall(path string, bin *target.Binary) (uint64, error) {
	fn, err := bin.Func("runtime.newproc.func1")
	if err != nil {
		return 0, err
	}
	runqput, err := bin.Func("runtime.runqput")
	if err != nil {
		return 0, err
	}
	ef, err := elf.Open(path)
	if err != nil {
		return 0, err
	}
	defer ef.Close()
	text := ef.Section(".text")
	if text == nil || fn.Entry < text.Addr || fn.End > text.Addr+text.Size {
		return 0, fmt.Errorf("runtime.newproc.func1 not in .text")
	}
	code := make([]byte, fn.End-fn.Entry)
	if _, err := text.ReadAt(code, int64(fn.Entry-text.Addr)); err != nil {
		return 0, err
	}
	for pc := 0; pc < len(code); {
		inst, err := x86asm.Decode(code[pc:], 64)
		if err != nil {
			break
		}
		if rel, ok := inst.Args[0].(x86asm.Rel); ok && inst.Op == x86asm.CALL &&
			fn.Entry+uint64(pc+inst.Len)+uint64(int64(rel)) == runqput.Entry {
			return bin.FileOffset(fn.Entry + uint64(pc))
		}
		pc += inst.Len
	}
	return 0, fmt.Errorf("no CALL runtime.runqput in runtime.newproc.func1")
}
