package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ctxwatch/ctxwatch/internal/testkit"
)

// bin holds ctxwatch and the example programs, built once, or prebuilt in
// $CTXWATCH_TEST_BIN.
var bin string

// targetArch is the GOARCH of the binaries the tests run: this machine's,
// except when vmtest builds them for a VM of another architecture.
var targetArch = runtime.GOARCH

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// In a VM (see vmtest/) there is no go command: the binaries are
	// prebuilt, from this same tree, into the directory this names.
	if dir := os.Getenv("CTXWATCH_TEST_BIN"); dir != "" {
		bin = dir
		return m.Run()
	}
	// vmtest builds them on the host this way: into this directory, kept,
	// and no test run; for a VM of another architecture, for the GOARCH
	// that CTXWATCH_TEST_GOARCH names (this test binary runs on the host).
	dir, buildOnly := os.Getenv("CTXWATCH_TEST_BUILD"), os.Getenv("CTXWATCH_TEST_BUILD") != ""
	if a := os.Getenv("CTXWATCH_TEST_GOARCH"); buildOnly && a != "" {
		targetArch = a
		os.Setenv("GOARCH", a)
	}
	if !buildOnly {
		var err error
		dir, err = os.MkdirTemp("", "ctxwatch-integration-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
	}
	bin = dir
	build := exec.Command("go", "build", "-o", dir+"/", "../cmd/ctxwatch", "../examples/...", "./testdata/waiter", "./testdata/otelunits", "./testdata/soak", "./testdata/checkfunc", "./testdata/slogsite", "./testdata/childspans", "./testdata/startsites", "./testdata/handoff", "./testdata/secret", "./testdata/spawnstorm", "../bench/target")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build ctxwatch and examples:", err)
		return 1
	}
	// Two examples again with -trimpath (TestTrimpath), as release builds
	// and container images often are: file names in the binary lose the
	// build machine's directories.
	trim := exec.Command("go", "build", "-trimpath", "-o", dir+"/trimpath/", "../examples/closure", "../examples/otelhttp")
	trim.Stderr = os.Stderr
	if err := trim.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build examples with -trimpath:", err)
		return 1
	}
	// What TestBadTarget and others point ctxwatch at (errors_test.go).
	if err := buildInputs(dir); err != nil {
		fmt.Fprintln(os.Stderr, "build test inputs:", err)
		return 1
	}
	if buildOnly {
		return 0
	}
	return m.Run()
}

func requireRoot(t *testing.T) {
	t.Helper()
	testkit.RequireBPF(t, "the integration tests (they attach uprobes)", nil)
}

type frame struct {
	Function string `json:"function"`
	File     string `json:"file"`
	Line     int    `json:"line"`
}

type breakLine struct {
	Type            string  `json:"type"`
	Kind            string  `json:"kind"`
	PID             int     `json:"pid"`
	TraceID         string  `json:"trace_id"`
	Goroutine       uint64  `json:"goroutine"`
	ParentGoroutine uint64  `json:"parent_goroutine"`
	Site            frame   `json:"site"`
	Spawn           []frame `json:"spawn"`
	Handoff         []frame `json:"handoff"` // lost-at-handoff: the send's stack
	Stack           []frame `json:"stack"`   // the user frames of the check, innermost first
	OtherTraceID    string  `json:"other_trace_id"`
	ParentSpanID    string  `json:"parent_span_id"` // stale-parent: the ended parent
	SpanID          string  `json:"span_id"`        // stale-parent: the span started on it
	AfterNS         uint64  `json:"after_ns"`
}

type spawnSite struct {
	Site         frame    `json:"site"`
	TracedSpawns uint64   `json:"traced_spawns"`
	Propagated   uint64   `json:"propagated"`
	Lost         uint64   `json:"lost"`
	NewRoot      uint64   `json:"new_root"`
	Retention    *float64 `json:"retention"`
}

type handoffSite struct {
	Site        frame    `json:"site"`
	Handed      uint64   `json:"handed"`
	Propagated  uint64   `json:"propagated"`
	Lost        uint64   `json:"lost"`
	NewRoot     uint64   `json:"new_root"`
	NeverJudged uint64   `json:"never_judged"`
	Retention   *float64 `json:"retention"`
}

type logSite struct {
	Site         frame  `json:"site"`
	InsideTrace  uint64 `json:"inside_trace"`
	WithTrace    uint64 `json:"with_trace"`
	WithoutTrace uint64 `json:"without_trace"`
}

type startSite struct {
	Site      frame    `json:"site"`
	Started   uint64   `json:"started"`
	Kept      uint64   `json:"kept"`
	Stale     uint64   `json:"stale"`
	Retention *float64 `json:"retention"`
}

type breakCount struct {
	Kind    string  `json:"kind"`
	Site    frame   `json:"site"`
	Spawn   []frame `json:"spawn"`
	Handoff []frame `json:"handoff"`
	Stack   []frame `json:"stack"`
	Count   uint64  `json:"count"`
	TraceID string  `json:"trace_id"`
}

type summaryLine struct {
	Type       string        `json:"type"`
	PID        int           `json:"pid"`
	Executable string        `json:"executable"`
	Events     uint64        `json:"events"`
	EventsLost *uint64       `json:"events_lost"`
	ProbeHits  uint64        `json:"probe_hits"`
	Unmatched  uint64        `json:"unmatched_checks"`
	SpawnSites []spawnSite   `json:"spawn_sites"`
	LogSites   []logSite     `json:"log_sites"`
	StartSites []startSite   `json:"start_sites"`
	Handoffs   []handoffSite `json:"handoff_sites"`
	Breaks     []breakCount  `json:"breaks"`
	Incomplete bool          `json:"incomplete"`
	Forgotten  uint64        `json:"pending_forgotten"`
	Evicted    uint64        `json:"states_evicted"`
	Notes      []string      `json:"notes"`
	Export     *exportStats  `json:"export"`
}

// result is what one ctxwatch run produced.
type result struct {
	code      int
	stdout    string // the target's
	stderr    string
	breaks    []breakLine
	summaries []summaryLine
	report    string // the JSON lines file
}

// ctxwatch runs ctxwatch with JSON output to a file, so the target's own
// output stays apart.
func ctxwatch(t *testing.T, args ...string) result {
	t.Helper()
	out := filepath.Join(t.TempDir(), "report.json")
	cmd := exec.Command(filepath.Join(bin, "ctxwatch"), append([]string{"--format", "json", "--output", out}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), report: out}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run ctxwatch: %v", err)
	}
	r.breaks, r.summaries = readReport(t, out)
	return r
}

func readReport(t *testing.T, path string) ([]breakLine, []summaryLine) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil
	}
	var breaks []breakLine
	var sums []summaryLine
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var typ struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(sc.Bytes(), &typ); err != nil {
			t.Fatalf("report line is not JSON: %v: %s", err, sc.Text())
		}
		switch typ.Type {
		case "break":
			var b breakLine
			if err := json.Unmarshal(sc.Bytes(), &b); err != nil {
				t.Fatal(err)
			}
			breaks = append(breaks, b)
		case "summary":
			var s summaryLine
			if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
				t.Fatal(err)
			}
			sums = append(sums, s)
		default:
			t.Fatalf("report line of unknown type %q", typ.Type)
		}
	}
	return breaks, sums
}

// marker is a "want:" comment in an example's source.
type marker struct {
	what string // "spawn", "site" or "stack"
	kind string
}

var markerRE = regexp.MustCompile(`// want:(spawn|site|stack) ([a-z-]+)`)

// sourceMarkers reads the want: comments of a Go source file, by line.
func sourceMarkers(t *testing.T, path string) map[int]marker {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ms := map[int]marker{}
	for i, line := range strings.Split(string(data), "\n") {
		if m := markerRE.FindStringSubmatch(line); m != nil {
			ms[i+1] = marker{what: m[1], kind: m[2]}
		}
	}
	return ms
}

// sourceFlags reads the "ctxwatch-flags:" comment of an example.
func sourceFlags(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if _, f, ok := strings.Cut(line, "// ctxwatch-flags:"); ok {
			return strings.Fields(f)
		}
	}
	return nil
}

// exampleFlags is sourceFlags for a verdict test of an example: the storm
// gets a ring that holds its whole burst (16 MiB; the default is 4). Its
// 20,000 spawns and first checks come faster than an agent starved of CPU
// drains them (single-threaded TCG, or a host loaded by other work), and
// the default ring then fills. That loss is counted and tested on its own
// (TestOverloadCounted); these tests are about verdicts, which a full ring
// would make depend on the machine's speed.
func exampleFlags(t *testing.T, name, src string) []string {
	t.Helper()
	args := sourceFlags(t, src)
	if name == "storm" {
		args = append(args, "--ring-size", fmt.Sprint(16<<20))
	}
	return args
}

// selfCount reads "WORD N" from a program's own summary line.
func selfCount(out, word string) (uint64, bool) {
	m := regexp.MustCompile(`(?:^|\s)` + regexp.QuoteMeta(word) + ` (\d+)`).FindStringSubmatch(out)
	if m == nil {
		return 0, false
	}
	n, err := strconv.ParseUint(m[1], 10, 64)
	return n, err == nil
}

// userFrame is the first frame in file, as ctxwatch reports the innermost
// user frame of a spawn stack.
func userFrame(frames []frame, file string) (frame, bool) {
	for _, f := range frames {
		if f.File == file {
			return f, true
		}
	}
	return frame{}, false
}

// waitFor polls cond until it holds or the deadline passes.
// $CTXWATCH_TEST_SLOW multiplies d: vmtest sets it under TCG, where loading
// the probes (the verifier's work) takes ten times as long.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	waitForOr(t, what, d, cond, nil)
}

// waitForOr is waitFor, with what describe returns (when not nil) in the
// failure: the state that did not come about.
func waitForOr(t *testing.T, what string, d time.Duration, cond func() bool, describe func() string) {
	t.Helper()
	waitUntil(t, what, time.Now().Add(slowed(d)), cond, describe)
}

// slowed is d stretched by $CTXWATCH_TEST_SLOW.
func slowed(d time.Duration) time.Duration {
	if n, err := strconv.Atoi(os.Getenv("CTXWATCH_TEST_SLOW")); err == nil && n > 1 {
		d *= time.Duration(n)
	}
	return d
}

// emulated reports whether the tests run under CPU emulation (vmtest
// under TCG sets $CTXWATCH_TEST_SLOW).
func emulated() bool { return slowed(1) > 1 }

// waitUntil polls cond until it holds or the time end passes.
func waitUntil(t *testing.T, what string, end time.Time, cond func() bool, describe func() string) {
	t.Helper()
	start := time.Now()
	for ; time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	if cond() { // once at least, even past the end
		return
	}
	msg := fmt.Sprintf("timed out after %v waiting for %s", end.Sub(start).Round(time.Millisecond), what)
	if describe != nil {
		msg += "; " + describe()
	}
	t.Fatal(msg)
}

// hasFrame reports whether frames has a frame at line of file.
func hasFrame(frames []frame, file string, line int) bool {
	for _, f := range frames {
		if f.File == file && f.Line == line {
			return true
		}
	}
	return false
}
