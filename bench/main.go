// Command bench measures what ctxwatch costs the program it watches.
//
// It builds ctxwatch and bench/target into a temporary directory and times,
// inside the target, six operations:
//
//	withvalue         context.WithValue outside any trace (ctxwatch's hot
//	                  path: one map lookup, no event)
//	withvalue-traced  context.WithValue on a context that holds a trace
//	spawn             go func(){...}() outside any trace, waited for
//	spawn-traced      goroutines started inside a trace, each checking the
//	                  inherited context once (WithCancel): two events each
//	slog              a log/slog record written outside any trace (the log
//	                  record probe, single-stepped: one map lookup, no event)
//	chan              a send and a receive on a buffered channel outside
//	                  any trace (the hand-off probes: one map lookup each)
//	select            the same, received by a two-case select (selectgo's
//	                  entry probe, and its RET's, single-stepped)
//
// each in three modes:
//
//	untraced  the target alone
//	floor     an empty eBPF program (bpf/empty.c) attached with uprobes at
//	          exactly the places ctxwatch probes, as planned by
//	          internal/uprobe for this binary: the cost of the uprobes
//	          themselves, which no probe body can go below
//	ctxwatch  the target run under ctxwatch --format json
//
// Every op runs -runs rounds; a round runs the three modes one after the
// other, in an order rotated from round to round, so that drift on a noisy
// machine hits every mode alike. The table gives the median ns/op of each
// mode and the ratios between medians. For spawn-traced, ctxwatch's JSON
// summary is checked: no event lost, and N traced spawns at the target's
// spawn site; a warning line follows the table otherwise.
//
// Run it as root (uprobes), from the repository root:
//
//	go run ./bench [-n N] [-runs R] [-out FILE]
//
// -n sets the operations per run for every op (default: 200000 for the
// withvalue ops, 50000 for the spawn ops: a uprobe hit costs microseconds).
// The table goes to standard output and, with -out, to FILE; progress goes
// to standard error.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/ctxwatch/ctxwatch/bpf"
	"github.com/ctxwatch/ctxwatch/internal/analysis"
	"github.com/ctxwatch/ctxwatch/internal/target"
	"github.com/ctxwatch/ctxwatch/internal/uprobe"
)

const (
	// traceKey is the target's trace key type, as passed to ctxwatch.
	traceKey = "main.traceKey"
	// spawnFunc is the target function that starts the traced goroutines.
	spawnFunc = "main.spawnTraced"
)

// mode is how the target is run.
type mode int

const (
	untraced mode = iota
	entry
	floor
	traced
	numModes
)

func (m mode) String() string {
	switch m {
	case untraced:
		return "untraced"
	case entry:
		return "entry"
	case floor:
		return "floor"
	case traced:
		return "ctxwatch"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// op is one operation of the target and its number of iterations per run.
type op struct {
	name string
	n    int
}

// result is the median ns/op of each mode for one op.
type result struct {
	op     op
	median [numModes]float64
}

// bench holds the built binaries and the loaded empty program.
type bench struct {
	ctxwatch, target string
	empty            *ebpf.Program
	offsets          []uint64 // file offsets of the target's probe points
	entryOffsets     []uint64 // the same, entry probes moved to the function's first instruction
	log              *log.Logger
}

func main() {
	n := flag.Int("n", 0, "operations per run for every op (default: 50000 for withvalue ops, 20000 for spawn ops)")
	runs := flag.Int("runs", 3, "runs of each op in each mode; the median is reported")
	out := flag.String("out", "", "also write the tables to `FILE` (docs/performance.md)")
	flag.IntVar(&cpuRounds, "cpu-rounds", 15, "rounds of each mode in the CPU-per-request section")
	flag.BoolVar(&opsOnly, "ops-only", false, "measure the per-op table only (no HTTP, storm or attach sections)")
	flag.StringVar(&only, "only", "", "run only this section after the per-op table (http, cpu, agent, attach or node), and the per-op table with -runs 1 -n 1000")
	flag.DurationVar(&httpDur, "http-duration", 4*time.Second, "load per HTTP run")
	flag.IntVar(&stormN, "storm-n", 100000, "goroutines the storm example spawns")
	flag.Parse()
	if *n < 0 || *runs <= 0 || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	if only != "" {
		*runs, *n = 1, 1000 // the per-op table as a smoke test only
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	logger := log.New(os.Stderr, "bench: ", 0)
	if err := run(ctx, *n, *runs, *out, logger); err != nil {
		stop()
		logger.Fatal(err)
	}
}

// Flags of the sections after the per-op table.
var (
	opsOnly   bool
	only      string
	httpDur   time.Duration
	stormN    int
	cpuRounds int
)

func run(ctx context.Context, n, runs int, out string, logger *log.Logger) error {
	start := time.Now()
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("remove memlock limit: %w", err)
	}
	dir, err := os.MkdirTemp("", "ctxwatch-bench-")
	if err != nil {
		return fmt.Errorf("create temporary directory: %w", err)
	}
	defer os.RemoveAll(dir)

	b := &bench{
		ctxwatch: filepath.Join(dir, "ctxwatch"),
		target:   filepath.Join(dir, "target"),
		log:      logger,
	}
	service, storm := filepath.Join(dir, "service"), filepath.Join(dir, "storm")
	for _, build := range []struct{ pkg, exe string }{
		{"./cmd/ctxwatch", b.ctxwatch},
		{"./bench/target", b.target},
		{"./bench/service", service},
		{"./examples/storm", storm},
	} {
		if err := goBuild(ctx, build.pkg, build.exe); err != nil {
			return err
		}
	}
	bin, err := target.Open(b.target)
	if err != nil {
		return fmt.Errorf("inspect target: %w", err)
	}
	defer bin.Close()
	points, err := b.plan(bin)
	if err != nil {
		return err
	}

	var objs bpf.EmptyObjects
	if err := bpf.LoadEmptyObjects(&objs, nil); err != nil {
		return fmt.Errorf("load empty eBPF program: %w", err)
	}
	defer objs.Close()
	b.empty = objs.Empty

	ops := []op{
		{"withvalue", 50000},
		{"withvalue-traced", 50000},
		{"spawn", 20000},
		{"spawn-traced", 20000},
		{"slog", 50000},
		{"chan", 100000},
		{"select", 100000},
	}
	if n > 0 {
		for i := range ops {
			ops[i].n = n
		}
	}
	var (
		results  []result
		warnings []string
	)
	for _, o := range ops {
		r, warns, err := b.measure(ctx, o, runs)
		if err != nil {
			return err
		}
		results = append(results, r)
		warnings = append(warnings, warns...)
	}

	var buf bytes.Buffer
	buf.WriteString(docIntro)
	buf.WriteString("## 1. Per operation\n\n")
	if err := writeTable(&buf, header(bin.GoVersion, ops, runs), points, results, warnings); err != nil {
		return err
	}
	costs, err := b.costsBench()
	if err != nil {
		return fmt.Errorf("steps of a probe's work: %w", err)
	}
	fmt.Fprintf(&buf, "\n### 1a. The steps of a probe's work on this kernel\n\n%s", costs)
	if !opsOnly {
		hc, err := b.hitCost()
		if err != nil {
			return fmt.Errorf("per-hit cost: %w", err)
		}
		fmt.Fprintf(&buf, "\n%s", hc)
		sp, err := b.spawnProbeBench(ctx, bin, runs, 20000)
		if err != nil {
			return fmt.Errorf("spawn probe places: %w", err)
		}
		fmt.Fprintf(&buf, "\n%s", sp)
		sections := []struct {
			title string
			run   func() (string, error)
		}{
			{"2. HTTP service under load", func() (string, error) { return b.httpBench(ctx, service, runs, httpDur, 4) }},
			{"2b. Service CPU per request at a fixed rate", func() (string, error) {
				return b.cpuBench(ctx, service, cpuRounds, 1000, 3*time.Second)
			}},
			{"3. The agent", func() (string, error) { return b.stormBench(ctx, storm, stormN) }},
			{"4. Attach time on a large binary", func() (string, error) {
				jaeger, err := jaegerBinary()
				if err != nil {
					return "", err
				}
				cfg := filepath.Join(dir, "jaeger.yaml")
				if err := os.WriteFile(cfg, []byte(jaegerConfig), 0o644); err != nil {
					return "", err
				}
				big, err := bigBinary(ctx)
				if err != nil {
					return "", err
				}
				return b.attachBench(ctx, []attachTarget{
					{name: "Jaeger v2 v1.76.0", exe: jaeger, args: []string{"--config", cfg}},
					{name: "bench/bigbin", exe: big},
				}, 5)
			}},
			{"5. Node agent", func() (string, error) { return b.nodeBench(ctx, service, 20*time.Second) }},
		}
		for _, sec := range sections {
			if only != "" && !strings.Contains(strings.ToLower(sec.title), only) {
				continue
			}
			b.log.Printf("%s", sec.title)
			text, err := sec.run()
			if err != nil {
				return fmt.Errorf("%s: %w", sec.title, err)
			}
			fmt.Fprintf(&buf, "\n## %s\n\n%s", sec.title, text)
		}
	}
	buf.WriteString(docNotes)
	if _, err := os.Stdout.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	if out != "" {
		if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
			return fmt.Errorf("write table: %w", err)
		}
	}
	b.log.Printf("done in %s", time.Since(start).Round(time.Second))
	return nil
}

// goBuild builds package pkg of this module into exe.
func goBuild(ctx context.Context, pkg, exe string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", exe, pkg)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s (run bench from the repository root): %w\n%s", pkg, err, stderr.Bytes())
	}
	return nil
}

// plan finds the places ctxwatch probes in the target, with ctxwatch's own
// planner, and keeps their file offsets for the floor. It returns a
// description of the points for the table.
func (b *bench) plan(bin *target.Binary) (string, error) {
	if bin.PIE {
		return "", fmt.Errorf("target %s is PIE; the floor needs a non-PIE target", b.target)
	}
	plan, err := uprobe.NewPlan(bin, uprobe.Options{
		TraceKeys: []uprobe.TraceKey{{Kind: uprobe.KeyType, Name: traceKey}},
	})
	if err != nil {
		return "", fmt.Errorf("plan probes for the target: %w", err)
	}
	counts := map[string]int{}
	var funcs []string
	for _, pt := range plan.Points {
		off, err := bin.FileOffset(pt.Address)
		if err != nil {
			return "", fmt.Errorf("probe point of %s: %w", pt.Func, err)
		}
		b.offsets = append(b.offsets, off)
		entryOff := off
		if pt.Program != uprobe.Spawn {
			fn, err := bin.Func(pt.Func)
			if err != nil {
				return "", fmt.Errorf("probe point of %s: %w", pt.Func, err)
			}
			if entryOff, err = bin.FileOffset(fn.Entry); err != nil {
				return "", fmt.Errorf("entry of %s: %w", pt.Func, err)
			}
		}
		b.entryOffsets = append(b.entryOffsets, entryOff)
		if counts[pt.Func] == 0 {
			funcs = append(funcs, pt.Func)
		}
		counts[pt.Func]++
	}
	var desc []string
	for _, f := range funcs {
		if c := counts[f]; c > 1 {
			desc = append(desc, fmt.Sprintf("%s (%d probes)", f, c))
		} else {
			desc = append(desc, f)
		}
	}
	return fmt.Sprintf("%d uprobes: %s", len(plan.Points), strings.Join(desc, ", ")), nil
}

// measure runs op o runs times in every mode and returns the medians, and
// warnings about what ctxwatch reported.
func (b *bench) measure(ctx context.Context, o op, runs int) (result, []string, error) {
	r := result{op: o}
	var (
		samples  [numModes][]float64
		warnings []string
	)
	for round := range runs {
		var line strings.Builder
		fmt.Fprintf(&line, "%s n=%d round %d/%d:", o.name, o.n, round+1, runs)
		for i := range numModes {
			m := (mode(round) + i) % numModes
			ns, warn, err := b.runOnce(ctx, o, m)
			if err != nil {
				return r, nil, fmt.Errorf("%s, %s, round %d: %w", o.name, m, round+1, err)
			}
			if warn != "" {
				warnings = append(warnings, fmt.Sprintf("%s round %d: %s", o.name, round+1, warn))
			}
			samples[m] = append(samples[m], ns)
			fmt.Fprintf(&line, " %s %.1f", m, ns)
		}
		b.log.Print(line.String())
	}
	for m := range numModes {
		r.median[m] = median(samples[m])
	}
	return r, warnings, nil
}

// runOnce runs the target once in mode m and returns the ns/op it printed
// and, for a ctxwatch run of spawn-traced, a warning when ctxwatch's
// summary is not what the run must produce.
func (b *bench) runOnce(ctx context.Context, o op, m mode) (float64, string, error) {
	args := []string{"-op", o.name, "-n", strconv.Itoa(o.n)}
	var report string
	switch m {
	case untraced:
	case floor, entry:
		offsets := b.offsets
		if m == entry {
			offsets = b.entryOffsets
		}
		detach, err := b.attachEmpty(offsets)
		if err != nil {
			return 0, "", err
		}
		defer detach()
	case traced:
		f, err := os.CreateTemp(filepath.Dir(b.target), "report-*.json")
		if err != nil {
			return 0, "", fmt.Errorf("create report file: %w", err)
		}
		report = f.Name()
		f.Close()
		defer os.Remove(report)
		args = append([]string{"--format", "json", "--output", report, "--trace-key", "type=" + traceKey, "--", b.target}, args...)
	}
	exe := b.target
	if m == traced {
		exe = b.ctxwatch
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return 0, "", fmt.Errorf("%s: %w\n%s", cmd, err, stderr.Bytes())
	}
	ns, err := parseNsOp(stdout.Bytes())
	if err != nil {
		return 0, "", fmt.Errorf("%s: %w", cmd, err)
	}
	if m != traced || o.name != "spawn-traced" {
		return ns, "", nil
	}
	data, err := os.ReadFile(report)
	if err != nil {
		return 0, "", fmt.Errorf("read ctxwatch report: %w", err)
	}
	warn, err := checkSpawnReport(data, o.n)
	if err != nil {
		return 0, "", err
	}
	return ns, warn, nil
}

// attachEmpty attaches the empty program at the given file offsets of the
// target's executable file. Uprobes are attached by inode, so they fire in
// the target started next. The returned function detaches them.
func (b *bench) attachEmpty(offsets []uint64) (func(), error) {
	ex, err := link.OpenExecutable(b.target)
	if err != nil {
		return nil, fmt.Errorf("open target for uprobes: %w", err)
	}
	var links []link.Link
	detach := func() {
		for _, l := range links {
			if err := l.Close(); err != nil {
				b.log.Printf("detach empty uprobe: %v", err)
			}
		}
	}
	for _, off := range offsets {
		l, err := ex.Uprobe("", b.empty, &link.UprobeOptions{Address: off})
		if err != nil {
			detach()
			return nil, fmt.Errorf("attach empty uprobe at file offset %#x: %w", off, err)
		}
		links = append(links, l)
	}
	return detach, nil
}

// parseNsOp finds the target's "ns/op <float>" line.
func parseNsOp(out []byte) (float64, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "ns/op "); ok {
			ns, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return 0, fmt.Errorf("parse target output %q: %w", sc.Text(), err)
			}
			return ns, nil
		}
	}
	return 0, fmt.Errorf("no ns/op line in target output %q", out)
}

// summary is the part of ctxwatch's JSON summary line checked here.
type summary struct {
	Type       string               `json:"type"`
	EventsLost uint64               `json:"events_lost"`
	SpawnSites []analysis.SpawnSite `json:"spawn_sites"`
}

// checkSpawnReport checks ctxwatch's JSON report of a spawn-traced run of n
// goroutines: one summary, no event lost, n traced spawns at spawnFunc. It
// returns a warning, empty when all is well; an error means the report
// could not be read.
func checkSpawnReport(data []byte, n int) (string, error) {
	var sums []summary
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		var s summary
		if err := dec.Decode(&s); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return "", fmt.Errorf("decode ctxwatch report: %w", err)
		}
		if s.Type == "summary" {
			sums = append(sums, s)
		}
	}
	if len(sums) != 1 {
		return fmt.Sprintf("ctxwatch reported %d summary lines, want 1", len(sums)), nil
	}
	s := sums[0]
	var problems []string
	if s.EventsLost != 0 {
		problems = append(problems, fmt.Sprintf("events_lost %d, want 0", s.EventsLost))
	}
	i := slices.IndexFunc(s.SpawnSites, func(site analysis.SpawnSite) bool { return site.Site.Function == spawnFunc })
	switch {
	case i < 0:
		problems = append(problems, fmt.Sprintf("no spawn site in %s, want %d traced spawns", spawnFunc, n))
	case s.SpawnSites[i].TracedSpawns != uint64(n):
		msg := fmt.Sprintf("traced_spawns %d at %s:%d, want %d",
			s.SpawnSites[i].TracedSpawns, spawnFunc, s.SpawnSites[i].Site.Line, n)
		if s.SpawnSites[i].TracedSpawns > uint64(n) {
			// Seen when a GC starts inside the trace: the runtime's mark
			// workers, one per P, are counted at the user frame that
			// allocated.
			msg += " (the excess is likely runtime goroutines, e.g. GC mark workers, started inside the trace)"
		}
		problems = append(problems, msg)
	}
	return strings.Join(problems, "; "), nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// header describes the machine and the run.
func header(goVersion string, ops []op, runs int) string {
	kernel := "unknown"
	var u unix.Utsname
	if err := unix.Uname(&u); err == nil {
		kernel = unix.ByteSliceToString(u.Release[:])
	}
	var ns []string
	for _, o := range ops {
		ns = append(ns, fmt.Sprintf("%s %d", o.name, o.n))
	}
	load := "?"
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(data))[:3], " ")
	}
	return fmt.Sprintf("%s, kernel %s, %s, %s, load average %s at the end of the per-op runs; N: %s; median of %d runs per mode, modes interleaved",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), kernel, cpuModel(), goVersion, load, strings.Join(ns, ", "), runs)
}

// cpuModel returns the first "model name" of /proc/cpuinfo and the number
// of CPUs listed.
func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	model, cpus := "unknown CPU", 0
	for line := range strings.Lines(string(data)) {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(key) {
		case "processor":
			cpus++
		case "model name":
			if cpus <= 1 {
				model = strings.TrimSpace(val)
			}
		}
	}
	return fmt.Sprintf("%s (%d CPUs)", model, cpus)
}

func writeTable(w io.Writer, header, points string, results []result, warnings []string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n%s\n\n", header, points)
	b.WriteString("| op | untraced ns/op | empty program at entry ns/op | empty program at chosen offset ns/op (floor) | ctxwatch ns/op | entry/floor | ctxwatch/untraced | ctxwatch/floor |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range results {
		fmt.Fprintf(&b, "| %s | %.1f | %.1f | %.1f | %.1f | %.2f | %.2f | %.2f |\n", r.op.name,
			r.median[untraced], r.median[entry], r.median[floor], r.median[traced],
			r.median[entry]/r.median[floor], r.median[traced]/r.median[untraced], r.median[traced]/r.median[floor])
	}
	for _, warn := range warnings {
		fmt.Fprintf(&b, "\nWARNING: %s", warn)
	}
	if len(warnings) > 0 {
		b.WriteString("\n")
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

// docIntro heads docs/performance.md.
const docIntro = `# Performance

Written by ` + "`go run ./bench -out docs/performance.md`" + ` (or ` + "`make bench`" + `), as root; every
table of one file comes from one run, its rows measured side by side. See
README.md (Cost) for the short story and internal/budget for the overhead
budget's definitions:

- **cost** of the probes: probe hits (counted in the kernel) × the cost of one
  hit, measured at start-up on the machine by timing calls of a function of
  ctxwatch's own binary with an empty eBPF program on it. Hits are charged
  the emulated cost; in a process where some probe had to fall back to a
  single-stepped instruction (a RET, a function's first instruction), every
  hit is charged the single-stepped cost, since the hit counter does not
  tell one probe from another.
- **overhead** = cost / (wall time × CPUs the target may run on).
- **sampled fraction**: the share of wall time during which the probes were
  attached (JSON summary field ` + "`sampled_fraction`" + `).

`

// docNotes ends docs/performance.md: the targets and what the
// tables above say about them. Static text: read it against the numbers.
const docNotes = `
## Targets, and why some are missed

- **Per-hit cost ≤ 1.2× the floor** (table 1, ctxwatch/floor): not met
  in every row, and out of reach on a kernel like this one for the rows
  inside a trace. The floor is the trap itself (an empty program where
  ctxwatch probes); what is above it is ctxwatch's eBPF work, whose steps
  table 1a times one by one on the running kernel: on this machine, in
  three runs, a read of the target cost 200-250 ns (as much for 256 bytes
  as for 16, and about 100 ns more into map memory than into the
  program's stack), a goroutine state stored under a new key 650-850 ns
  (an element of the LRU map untouched since the map was made: cache
  misses), a clock read about 100 ns. A traced spawn must store the child's state, find its spawner
  and read the stack of the go statement (a read per frame: Go's frame
  pointers); the child's first check reads the context chain, its trace
  value and its return address, and each sends an event. 1.2× leaves 20%
  of the spawn-traced row's floor (about 500 ns) for all of that: one
  insert alone is more. What the spawn program reads was cut (by hand,
  the kernel's run-time statistics, medians of 7 to 9 interleaved runs of
  bench/target): on Go 1.21 and later the new goroutine's id and its
  spawner's come from one read of the new g (g.parentGoid), m.curg is
  read only inside a trace, and the spawn event takes the state's time (a
  clock read less): about 650 → 470 ns a run outside a trace, 3,330 →
  3,100 ns inside one. Where traps are cheap the same work is a larger
  share. On this kind of machine the ratios of one row move by 0.2-0.5
  from run to run (see the load average in the header): compare rows of
  one run only.
- **Entry vs chosen offset** (table 1, entry/floor): the empty program on a
  function's first instruction (` + "`CMPQ SP, 16(R14)`" + `, single-stepped) costs
  several times the same program on the prologue's ` + "`PUSHQ BP`" + ` (emulated).
  Every entry probe of ctxwatch is on the PUSHQ BP (` + "`--verbose`" + ` names any
  that falls back to the entry).
- **The spawn probe is emulated.** x86 uprobes emulate CALL, JMP, Jcc, NOP
  and PUSH, not RET: a probe on runtime.newproc1's RET is single-stepped (the
  "spawn probe places" table). ctxwatch probes the CALL of runtime.runqput in
  runtime.newproc.func1 instead, which sees the same state (R14 = g0, m.curg
  = the spawner) with the new g in RBX; the RETs are only a fallback.
- **--overhead-budget 1 holds** (table 2b): the budget is a share of the
  CPUs the service may run on, so table 2b gives the service's extra CPU
  time in that unit beside the budget's estimate (and, for scale, as a
  share of the service's own CPU, which is larger: the service uses a
  fraction of the machine). The estimate charges each probe hit the trap
  cost measured at start-up (an empty program on ctxwatch's own binary, in
  a tight loop), the programs' run time as the kernel's statistics measure
  it, and each duty cycle's attach and detach. Where the measured share is
  above the estimate, the difference is what a trap costs inside a real
  program beyond the calibration loop's (cold caches and TLB after each
  trap, the uprobe's lookup among the process's probes), which nothing
  charges yet: the budget then lets the probes stay in longer than it
  should. Each round is measured after 3 s of load: the budget's bucket
  is full when a watch begins, and a 1% budget's first 20 ms of probe
  time (2 CPUs, 1 s window) would be 0.33% more over a 3 s round; a long
  watch pays it once. Table 2 (throughput under a closed loop) spreads too much from
  round to round here to show 1%. Every break site is still found.
- **0 events lost** (tables 2 and 3): required; a non-zero count is a bug.
- **Attach ≤ 150 ms on a real large binary** (table 4, Jaeger v2). ` + "`ctxwatch --verbose`" + `
  says where each attach's time went (inspect, plan, place, maps, load,
  attach; the table's time also counts starting ctxwatch, which those
  phases do not). On Jaeger, in order: inspecting the
  file (15-30 ms: mapped, used in place, the pclntab parsed once);
  planning (25-55 ms: layouts from internal/layout, no
  DWARF for a Go and OTel SDK release the table knows; the types found by
  name in one batch, two passes over the type data; functions looked up
  by name compared in place; the user code's text ranges, selects and
  context itabs read on other goroutines meanwhile), while another
  goroutine parses the eBPF object and makes the maps (0-45 ms more
  when it ends after the plan: the goroutine map's 131,072 entries are
  made by the kernel up front); then the kernel's verifier on the
  programs the probes use (the others are not loaded), in two loads at
  once: 66,455 instructions verified on Jaeger, 75-100 ms of wall time
  (84,234 before with_value's and check's trace compares were made
  without branches, which the verifier followed as paths of their own;
  712,105 and about 400 ms before the context walk, a step of it, the
  key compare and the user-code search became global functions,
  verified once per program); attaching, 5-10 ms. The verifier costs
  about 1.3 µs an instruction on this machine: 150 ms would need the
  walk's globals, verified once in each of the eleven programs, shared
  (kernels whose global functions take pointers, 5.12, or attach
  cookies, 5.15, could let one program serve every context check; the
  oldest kernel ctxwatch supports, 5.10, has neither), or the maps made
  before the target is known.
  have. With --pid's default budget, the cost of a hit is measured once
  the probes are in, so that it does not compete with the attach for the
  CPUs: the duty cycle starts when it is known.
`
