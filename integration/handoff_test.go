package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// handoffMarker is a marked line of testdata/handoff: "// want:send KIND N"
// on a send inside the request's trace (KIND: propagated, lost-at-handoff
// or not-judged; N elements per request), "// want:recv KIND" on a
// worker's line where a hand-off is judged.
type handoffMarker struct {
	what, kind string
	n          uint64
}

func handoffMarkers(t *testing.T, path string) map[int]handoffMarker {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`// want:(send|recv) ([a-z-]+)(?: (\d+))?`)
	ms := map[int]handoffMarker{}
	for i, line := range strings.Split(string(data), "\n") {
		if m := re.FindStringSubmatch(line); m != nil {
			n, _ := strconv.ParseUint(m[3], 10, 64)
			ms[i+1] = handoffMarker{what: m[1], kind: m[2], n: n}
		}
	}
	return ms
}

// TestHandoffWorkerPools: testdata/handoff's handler, on a keep-alive
// connection, feeds worker pools through channels in every way the probes
// follow (buffered, unbuffered with the worker waiting or the sender
// waiting, a full one-slot buffer, a range loop, a one-case select with
// default; multi-case selects whose worker waits in the select, takes the
// element from the buffer or takes it from the waiting sender). Each send
// site marked want:send hands one element per request
// (two for the full buffer's loop) and counts what the worker's next span
// start did: all kept where the job carries the request's context, all
// new roots where it carries an id and the worker starts on Background,
// none judged where the job carries another trace. Each new root is one
// lost-at-handoff at the worker's line marked want:recv, with the send's
// stack. Sends outside any trace (main's, the untraced request's), start
// signals (chan struct{}: no element), the library's own channel
// (io.Pipe) and a result sent to a handler inside its own span hand
// nothing: no send site, no break.
func TestHandoffWorkerPools(t *testing.T) {
	requireRoot(t)
	src, err := filepath.Abs("testdata/handoff/main.go")
	if err != nil {
		t.Fatal(err)
	}
	markers := handoffMarkers(t, src)
	r := ctxwatch(t, "--", filepath.Join(bin, "handoff"))
	requests := checkHandoffRun(t, r, src)
	sum := r.summaries[0]

	sends := map[int]handoffMarker{} // marked send lines seen
	for _, s := range sum.Handoffs {
		m := markers[s.Site.Line]
		where := fmt.Sprintf("send site %s:%d (%d handed, %d kept, %d lost, %d new roots, %d not judged)",
			filepath.Base(s.Site.File), s.Site.Line, s.Handed, s.Propagated, s.Lost, s.NewRoot, s.NeverJudged)
		if s.Site.File != src || m.what != "send" {
			t.Errorf("%s: not a line marked want:send", where)
			continue
		}
		sends[s.Site.Line] = m
		n := requests * m.n
		want := handoffSite{Site: s.Site, Handed: n}
		switch m.kind {
		case "propagated":
			want.Propagated = n
		case "lost-at-handoff":
			want.NewRoot = n
		case "not-judged":
			want.NeverJudged = n
		}
		got := s
		got.Retention = nil
		if got != want {
			t.Errorf("%s: want %d handed, all %s", where, n, m.kind)
		}
	}
	recvs := map[int]bool{}
	for _, b := range sum.Breaks {
		where := fmt.Sprintf("%s at %s:%d (%d times)", b.Kind, filepath.Base(b.Site.File), b.Site.Line, b.Count)
		if b.Kind != "lost-at-handoff" || b.Site.File != src || markers[b.Site.Line] != (handoffMarker{"recv", "lost-at-handoff", 0}) {
			t.Errorf("%s: want lost-at-handoff at a line marked want:recv", where)
			continue
		}
		recvs[b.Site.Line] = true
		if len(b.Handoff) == 0 || b.Handoff[0].File != src || markers[b.Handoff[0].Line].kind != "lost-at-handoff" ||
			markers[b.Handoff[0].Line].what != "send" || b.Handoff[0].Function != "main.handle" {
			t.Errorf("%s: handoff stack %v does not start at a send marked want:send lost-at-handoff", where, b.Handoff)
			continue
		}
		if want := requests * markers[b.Handoff[0].Line].n; b.Count != want {
			t.Errorf("%s: want %d, one per element sent at line %d", where, want, b.Handoff[0].Line)
		}
		if len(b.Spawn) != 0 || len(b.Stack) == 0 || b.Stack[0] != b.Site {
			t.Errorf("%s: spawn %v, stack %v; want no spawn stack and the stack at the site", where, b.Spawn, b.Stack)
		}
	}
	for line, m := range markers {
		if m.what == "send" && sends[line] == (handoffMarker{}) {
			t.Errorf("line %d marked want:send %s: no send site", line, m.kind)
		}
		if m.what == "recv" && !recvs[line] {
			t.Errorf("line %d marked want:recv %s: no break", line, m.kind)
		}
	}
	for _, s := range sum.SpawnSites {
		if s.Site.File == src {
			t.Errorf("spawn site %s:%d: the workers are started outside any trace", filepath.Base(s.Site.File), s.Site.Line)
		}
	}
	for _, b := range r.breaks {
		if b.ParentGoroutine == 0 || b.ParentGoroutine == b.Goroutine || b.OtherTraceID == "" || b.OtherTraceID == b.TraceID || len(b.Handoff) == 0 {
			t.Errorf("break line lacks the sender, the new trace or the handoff stack: %+v", b)
		}
	}
}

// checkHandoffRun checks what every run of testdata/handoff must show: a
// clean exit, the program's own account, nothing lost, a break line per
// distinct break. It returns the number of traced requests.
func checkHandoffRun(t *testing.T, r result, src string) uint64 {
	t.Helper()
	if r.code != 0 || len(r.summaries) != 1 {
		t.Fatalf("exit %d, %d summaries; stderr:\n%s", r.code, len(r.summaries), r.stderr)
	}
	requests, ok := selfCount(r.stdout, "requests")
	if health, _ := selfCount(r.stdout, "health"); !ok || requests == 0 || health != requests {
		t.Fatalf("the program's account is not in its output: %q", r.stdout)
	}
	sum := r.summaries[0]
	if sum.EventsLost == nil || *sum.EventsLost != 0 || sum.Unmatched != 0 {
		t.Errorf("events_lost %v, unmatched_checks %d; want 0", sum.EventsLost, sum.Unmatched)
	}
	if len(r.breaks) != len(sum.Breaks) {
		t.Errorf("%d break lines for %d distinct breaks", len(r.breaks), len(sum.Breaks))
	}
	return requests
}

// TestExportHandoff: each lost-at-handoff of testdata/handoff is a break
// span in Jaeger inside the request's trace, child of its server span, at
// the worker's line, with the send's line and stack, linking the new
// trace: one per element sent at a line marked want:send lost-at-handoff,
// and no other break span.
func TestExportHandoff(t *testing.T) {
	requireRoot(t)
	j := startJaeger(t)
	src, err := filepath.Abs("testdata/handoff/main.go")
	if err != nil {
		t.Fatal(err)
	}
	markers := handoffMarkers(t, src)
	service := fmt.Sprintf("handoff-%d", time.Now().UnixNano())
	target := []string{"env", "OTEL_SERVICE_NAME=" + service, "OTEL_EXPORTER_OTLP_ENDPOINT=http://" + j.http,
		"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf", filepath.Join(bin, "handoff")}
	r := ctxwatchWithEnv(t, []string{"OTEL_METRICS_EXPORTER=none"}, append([]string{"--otlp-rate", "1000",
		"--otlp-endpoint", "http://" + j.http, "--otlp-protocol", "http/protobuf", "--"}, target...)...)
	if r.code != 0 {
		t.Fatalf("ctxwatch exited %d; stderr:\n%s", r.code, r.stderr)
	}
	requests, _ := selfCount(r.stdout, "requests")
	perRequest := 0
	for _, m := range markers {
		if m.what == "send" && m.kind == "lost-at-handoff" {
			perRequest += int(m.n)
		}
	}
	want := int(requests) * perRequest
	if requests == 0 || r.export == nil || r.export.Sent != uint64(want) || r.export.Dropped != 0 {
		t.Fatalf("%d requests, summary export %+v; want %d sent, 0 dropped; stderr:\n%s", requests, r.export, want, r.stderr)
	}
	traces := waitBreakSpans(t, j, service, "lost-at-handoff", int(requests), want, r.stderr)
	for _, tr := range traces {
		work := tr.named("work")
		if len(work) != 1 {
			continue // a worker's own trace, or the count above says why
		}
		sent := map[int]int{}
		for _, s := range tr.Spans {
			if !strings.HasPrefix(s.OperationName, "trace break:") {
				continue
			}
			line, _ := strconv.Atoi(fmt.Sprint(s.tag("code.line.number")))
			send, _ := strconv.Atoi(fmt.Sprint(s.tag("ctxwatch.handoff.line")))
			sent[send]++
			where := fmt.Sprintf("break span %s %q at line %d, sent at line %d", s.SpanID, s.OperationName, line, send)
			if s.OperationName != "trace break: lost-at-handoff" || markers[line] != (handoffMarker{"recv", "lost-at-handoff", 0}) ||
				markers[send].kind != "lost-at-handoff" {
				t.Errorf("%s: want lost-at-handoff at a line marked want:recv, sent at a line marked want:send lost-at-handoff", where)
			}
			if p := s.ref("CHILD_OF"); p == nil || p.SpanID != work[0].SpanID {
				t.Errorf("%s: parent %+v, want the request's server span %s", where, p, work[0].SpanID)
			}
			if !strings.Contains(fmt.Sprint(s.tag("ctxwatch.handoff.stack")), fmt.Sprintf("main.go:%d", send)) {
				t.Errorf("%s: handoff stack %v", where, s.tag("ctxwatch.handoff.stack"))
			}
			if l := s.ref("FOLLOWS_FROM"); l == nil || normID(l.TraceID) == tr.TraceID {
				t.Errorf("%s: no link to the new trace: %+v", where, s.References)
			}
		}
		for line, m := range markers {
			if m.what == "send" && m.kind == "lost-at-handoff" && sent[line] != int(m.n) {
				t.Errorf("trace %s: %d break spans sent at line %d, want %d", tr.TraceID, sent[line], line, m.n)
			}
		}
	}
}

// TestHandoffToolchains: the hand-off probes read runtime.hchan and
// runtime.sudog, whose fields moved across releases (hchan.timer in Go
// 1.23, sudog.isSelect in 1.26), and walk a parked receiver's frames.
// testdata/handoffcompat, built by Go 1.17.13 (the oldest release ctxwatch
// watches), 1.21.13, 1.24.13 and 1.27.4 (the host's 1.26 builds
// testdata/handoff), gets the send sites and lost-at-handoff breaks its
// markers say, with a trace under a key of its own: exact counts per line,
// multi-case select workers included (waiting in the select, taking from
// the buffer, and a job with the unit's context: kept).
func TestHandoffToolchains(t *testing.T) {
	requireRoot(t)
	src, err := filepath.Abs("testdata/handoffcompat/main.go")
	if err != nil {
		t.Fatal(err)
	}
	code, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	markers := handoffMarkers(t, src)
	for _, tc := range append([]string{"go1.17.13"}, logToolchains...) {
		t.Run(tc, func(t *testing.T) {
			dir := t.TempDir()
			for name, data := range map[string]string{"go.mod": "module example.com/handoffcompat\n\ngo 1.17\n", "main.go": string(code)} {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			exe := filepath.Join(dir, "handoffcompat")
			build := exec.Command("go", "build", "-o", exe, ".")
			build.Dir = dir
			build.Env = compatEnv(tc, false)
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("build with %s: %v\n%s", tc, err, out)
			}
			r := ctxwatch(t, "--trace-key", "type=main.traceKey", "--", exe)
			if r.code != 0 || len(r.summaries) != 1 {
				t.Fatalf("exit %d, %d summaries; stderr:\n%s", r.code, len(r.summaries), r.stderr)
			}
			units, ok := selfCount(r.stdout, "requests")
			if !ok || units == 0 {
				t.Fatalf("the program's account is not in its output: %q", r.stdout)
			}
			sum := r.summaries[0]
			var got, want []string
			for _, s := range sum.Handoffs {
				got = append(got, fmt.Sprintf("send %d: %d handed, %d kept, %d lost, %d new roots, %d not judged",
					s.Site.Line, s.Handed, s.Propagated, s.Lost, s.NewRoot, s.NeverJudged))
			}
			for _, b := range sum.Breaks {
				send := 0
				if len(b.Handoff) > 0 {
					send = b.Handoff[0].Line
				}
				got = append(got, fmt.Sprintf("%s %d at %d, sent at %d", b.Kind, b.Count, b.Site.Line, send))
			}
			recv := 0
			for line, m := range markers {
				if m.what == "recv" {
					recv = line
				}
			}
			for line, m := range markers {
				if m.what != "send" {
					continue
				}
				n := units * m.n
				switch m.kind {
				case "propagated":
					want = append(want, fmt.Sprintf("send %d: %d handed, %d kept, 0 lost, 0 new roots, 0 not judged", line, n, n))
				case "lost-at-handoff":
					want = append(want, fmt.Sprintf("send %d: %d handed, 0 kept, %d lost, 0 new roots, 0 not judged", line, n, n),
						fmt.Sprintf("lost-at-handoff %d at %d, sent at %d", n, recv, line))
				case "not-judged":
					want = append(want, fmt.Sprintf("send %d: %d handed, 0 kept, 0 lost, 0 new roots, %d not judged", line, n, n))
				}
			}
			slices.Sort(got)
			slices.Sort(want)
			if sum.EventsLost == nil || *sum.EventsLost != 0 {
				t.Errorf("built with %s: events_lost %v, want 0", tc, sum.EventsLost)
			}
			if !slices.Equal(got, want) {
				t.Errorf("built with %s:\n got %q\nwant %q", tc, got, want)
			}
		})
	}
}
