package integration

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestExamples runs every example under ctxwatch and checks, against the
// want: comments in its source and the counts the program reports about
// itself:
//   - every break is at a line marked with its kind (site and spawn site),
//     and every marked site has its break: no break on a line that keeps
//     its context;
//   - every line marked stack KIND is a frame of the stack (the user
//     frames of the check) of a break of that kind;
//   - every spawn line marked propagated has 100% retention, every one
//     marked lost-at-spawn or new-root 0%, and no other spawn line of the
//     example shows up inside a trace;
//   - totals equal the program's own: kept = propagated, lost, new-root,
//     dropped, overwritten and stale-parent occurrences, spawned = traced
//     spawns;
//   - nothing was lost on the way (events_lost = 0, every first check
//     matched its spawn).
func TestExamples(t *testing.T) {
	requireRoot(t)
	for _, name := range []string{
		"closure", "background", "argument", "middleware", "collision",
		"errgroup", "otelspans", "otelhttp", "storm", "worker",
		"fireforget", "semaphore", "once", "keyvalue", "signalroot",
		"nocancel", "lazyworker", "helpers", "deepstart", "afterfunc",
		"staleparent",
	} {
		t.Run(name, func(t *testing.T) {
			src, err := filepath.Abs(filepath.Join("..", "examples", name, "main.go"))
			if err != nil {
				t.Fatal(err)
			}
			args := append(exampleFlags(t, name, src), "--", filepath.Join(bin, name))
			r := ctxwatch(t, args...)
			if r.code != 0 {
				t.Fatalf("ctxwatch exited %d; stderr:\n%s", r.code, r.stderr)
			}
			checkExample(t, src, r)
		})
	}
}

// TestTrimpath: examples built with -trimpath (no build-machine paths in
// the binary) give the same verdicts at the same lines.
func TestTrimpath(t *testing.T) {
	requireRoot(t)
	for _, name := range []string{"closure", "otelhttp"} {
		t.Run(name, func(t *testing.T) {
			src, err := filepath.Abs(filepath.Join("..", "examples", name, "main.go"))
			if err != nil {
				t.Fatal(err)
			}
			r := ctxwatch(t, append(exampleFlags(t, name, src), "--", filepath.Join(bin, "trimpath", name))...)
			if r.code != 0 {
				t.Fatalf("ctxwatch exited %d; stderr:\n%s", r.code, r.stderr)
			}
			checkExampleAs(t, src, "github.com/ctxwatch/ctxwatch/examples/"+name+"/main.go", r)
		})
	}
}

func checkExample(t *testing.T, src string, r result) {
	t.Helper()
	checkExampleAs(t, src, src, r)
}

// checkExampleAs is checkExample for a binary that names the source file
// file (a -trimpath build names it by its module path).
func checkExampleAs(t *testing.T, src, file string, r result) {
	t.Helper()
	markers := sourceMarkers(t, src)
	if len(r.summaries) != 1 {
		t.Fatalf("want 1 summary, got %d; stderr:\n%s", len(r.summaries), r.stderr)
	}
	sum := r.summaries[0]
	if sum.EventsLost == nil {
		t.Errorf("events_lost missing from the summary, want 0")
	} else if *sum.EventsLost != 0 {
		t.Errorf("events_lost = %d, want 0", *sum.EventsLost)
	}
	if sum.Unmatched != 0 {
		t.Errorf("%d first checks had no spawn", sum.Unmatched)
	}

	// Breaks: each at a marked line, of the marked kind.
	counts := map[string]uint64{}
	seen := map[int]bool{}
	for _, b := range sum.Breaks {
		counts[b.Kind] += b.Count
		where := fmt.Sprintf("%s at %s:%d", b.Kind, filepath.Base(b.Site.File), b.Site.Line)
		if b.Site.File != file {
			t.Errorf("%s: site outside the example", where)
			continue
		}
		if m := markers[b.Site.Line]; m != (marker{"site", b.Kind}) {
			t.Errorf("%s: line is marked %+v, want site %s", where, m, b.Kind)
		}
		seen[b.Site.Line] = true
		if b.Kind != "lost-at-spawn" && b.Kind != "new-root" {
			if len(b.Spawn) != 0 {
				t.Errorf("%s: has a spawn stack", where)
			}
			continue
		}
		sp, ok := userFrame(b.Spawn, file)
		if !ok {
			t.Errorf("%s: spawn stack %v has no frame in the example", where, b.Spawn)
		} else if m := markers[sp.Line]; m != (marker{"spawn", b.Kind}) {
			t.Errorf("%s: spawned at line %d marked %+v, want spawn %s", where, sp.Line, m, b.Kind)
		}
		if b.Spawn[0].Function == "runtime.newproc" {
			t.Errorf("%s: spawn stack starts in the runtime: %v", where, b.Spawn[0])
		}
	}
	for line, m := range markers {
		if m.what == "site" && !seen[line] {
			t.Errorf("line %d marked site %s: no such break reported", line, m.kind)
		}
	}

	// Stacks: a line marked stack KIND (where a handler took the context
	// that a helper further down then used) is in the stack of a break of
	// that kind, in the summary and in the break lines.
	for line, m := range markers {
		if m.what != "stack" {
			continue
		}
		var inSum, inLines bool
		for _, b := range sum.Breaks {
			inSum = inSum || b.Kind == m.kind && hasFrame(b.Stack, file, line)
		}
		for _, b := range r.breaks {
			inLines = inLines || b.Kind == m.kind && hasFrame(b.Stack, file, line)
		}
		if !inSum {
			t.Errorf("line %d marked stack %s: in the stack of no such break of the summary %+v", line, m.kind, sum.Breaks)
		}
		if !inLines {
			t.Errorf("line %d marked stack %s: in the stack of no such break line %+v", line, m.kind, r.breaks)
		}
	}

	// Spawn sites: retention as marked.
	var total spawnSite
	spawnSeen := map[int]bool{}
	for _, s := range sum.SpawnSites {
		total.TracedSpawns += s.TracedSpawns
		total.Propagated += s.Propagated
		total.Lost += s.Lost
		total.NewRoot += s.NewRoot
		where := fmt.Sprintf("spawn site %s:%d (%d traced, %d kept, %d lost, %d new roots)",
			filepath.Base(s.Site.File), s.Site.Line, s.TracedSpawns, s.Propagated, s.Lost, s.NewRoot)
		if s.Site.File != file {
			if s.Lost+s.NewRoot != 0 {
				t.Errorf("%s: library spawn site judged as broken", where)
			}
			continue
		}
		judged := s.Propagated + s.Lost + s.NewRoot
		m, ok := markers[s.Site.Line]
		if !ok || m.what != "spawn" {
			// A library's goroutine started under a user call (a
			// transport dialling for client.Do) never shows a context
			// with user code on the stack: counted, never judged.
			if judged != 0 {
				t.Errorf("%s: not a marked spawn line", where)
			}
			continue
		}
		spawnSeen[s.Site.Line] = true
		if s.TracedSpawns == 0 || judged != s.TracedSpawns {
			t.Errorf("%s: every goroutine of the example checks, want all judged", where)
		}
		want := map[string]uint64{"propagated": s.Propagated, "lost-at-spawn": s.Lost, "new-root": s.NewRoot}[m.kind]
		if want != judged {
			t.Errorf("%s: marked %s for all of them", where, m.kind)
		}
	}
	for line, m := range markers {
		if m.what == "spawn" && !spawnSeen[line] {
			t.Errorf("line %d marked spawn %s: no traced spawn reported", line, m.kind)
		}
	}

	// Totals against the program's own account.
	out := strings.TrimSpace(r.stdout)
	for word, got := range map[string]uint64{
		"spawned":      total.TracedSpawns,
		"kept":         total.Propagated,
		"lost":         total.Lost,
		"new-root":     total.NewRoot,
		"dropped":      counts["dropped"],
		"overwritten":  counts["overwritten"],
		"stale-parent": counts["stale-parent"],
	} {
		if want, ok := selfCount(out, word); ok && got != want {
			t.Errorf("%s: ctxwatch counted %d, the program %d (%q)", word, got, want, out)
		}
	}
	// Every traced spawn is at least two probe hits: its spawn and its
	// goroutine's first check.
	if sum.ProbeHits < 2*total.TracedSpawns {
		t.Errorf("probe_hits %d for %d traced spawns", sum.ProbeHits, total.TracedSpawns)
	}
	// Each distinct break is printed once as a line, as it happens.
	if len(r.breaks) != len(sum.Breaks) {
		t.Errorf("%d break lines for %d distinct breaks", len(r.breaks), len(sum.Breaks))
	}
	for _, b := range r.breaks {
		if b.PID != sum.PID || b.TraceID == "" || b.Goroutine == 0 {
			t.Errorf("break line lacks pid, trace or goroutine: %+v", b)
		}
	}
}
