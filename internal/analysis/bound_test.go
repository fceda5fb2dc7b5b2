package analysis_test

import (
	"reflect"
	"runtime"
	"testing"

	"github.com/ctxwatch/ctxwatch/internal/analysis"
	"github.com/ctxwatch/ctxwatch/internal/event"
)

// liveHeap is the heap still in use after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// storm feeds a a spawn in a trace per goroutine in [from, to): every
// other goroutine makes its first check right away (propagated), the
// others never do, as goroutines that exit without using a context.
func storm(t *testing.T, a *analysis.Analyzer, from, to uint64) {
	t.Helper()
	sp := spawn(0, 0, 1, retGoHandle, retServe)
	fc := firstCheck(0, 0, event.Propagated, retSQLConn, retAuditFunc)
	for g := from; g < to; g++ {
		sp.Goroutine, sp.Time = g, g
		if _, ok := a.Handle(sp); ok {
			t.Fatalf("spawn of g%d reported a break", g)
		}
		if g%2 == 0 {
			fc.Goroutine, fc.Time, fc.SpawnTime = g, g, g
			if _, ok := a.Handle(fc); ok {
				t.Fatalf("first check of g%d reported a break", g)
			}
		}
	}
}

// TestStateBounded: over a million goroutines spawned in a trace, half of
// which never check (the probes see no goroutine exit), the analyzer keeps
// at most MaxPending goroutines: it forgets the oldest, counts them, still
// matches the newest, and its heap stops growing once MaxPending are
// pending.
func TestStateBounded(t *testing.T) {
	const (
		max = 1 << 14
		n   = 1_000_000
	)
	a := newAnalyzer(max)
	// Warm up past the bound: MaxPending silent goroutines pending, the
	// maps at their working size.
	const warm = 8 * max
	storm(t, a, 100, 100+warm)
	before := liveHeap()
	storm(t, a, 100+warm, 100+n)
	after := liveHeap()
	grown := int64(after) - int64(before)
	t.Logf("live heap %.1f MB after %d spawns, %.1f MB after %d (%+d bytes)",
		float64(before)/1e6, warm, float64(after)/1e6, n, grown)
	// An analyzer that kept every silent goroutine would hold 450,000 more
	// of them: tens of megabytes.
	if grown > 1<<20 {
		t.Errorf("live heap grew by %d bytes over %d more spawns, with at most %d goroutines pending", grown, n-warm, max)
	}

	s := a.Snapshot()
	if want := uint64(n/2 - max); s.Forgotten != want {
		t.Errorf("Forgotten = %d, want %d (every silent goroutine but the newest %d)", s.Forgotten, want, max)
	}
	if ss := site(t, s, fGoHandle); ss.TracedSpawns != n || ss.Propagated != n/2 {
		t.Errorf("spawn site %+v, want %d traced, %d propagated", ss, n, n/2)
	}
	// The newest max silent goroutines are still matched when they check at
	// last; an older one was forgotten.
	for g := uint64(100 + n - 1); g >= 100+n-2*max; g -= 2 {
		mustBreak(t, a, spawnedAt(firstCheck(g, g, event.Lost, retSQLConn, retAuditFunc), g))
	}
	mustNoBreak(t, a, firstCheck(n, 100+n-2*max-1, event.Lost, retSQLConn, retAuditFunc))
	s = a.Snapshot()
	if s.Unmatched != 1 {
		t.Errorf("Unmatched = %d, want 1: only the goroutine older than the newest %d pending", s.Unmatched, max)
	}
	if len(s.Breaks) != 1 || s.Breaks[0].Count != max {
		t.Errorf("Breaks = %+v, want one lost-at-spawn counted %d times", s.Breaks, max)
	}
}

// TestPendingSize: the analyzer at its default bound, as ctxwatch runs it
// (one pending goroutine per state the kernel's goroutine map holds), costs
// little per pending goroutine: the agent stays within its memory budget
// with the pending set full.
func TestPendingSize(t *testing.T) {
	a := analysis.New(pid, analysis.Options{Resolver: resolver(), IsUser: isUser})
	storm(t, a, 100, 100+8) // stacks and sites resolved
	before := liveHeap()
	storm(t, a, 200, 200+4*analysis.DefaultMaxPending)
	after := liveHeap()
	if f := a.Snapshot().Forgotten; f != analysis.DefaultMaxPending+4 {
		t.Fatalf("Forgotten = %d, want %d: the pending set is not full", f, analysis.DefaultMaxPending+4)
	}
	per := float64(int64(after)-int64(before)) / analysis.DefaultMaxPending
	t.Logf("%.1f MB live for %d pending goroutines: %.0f bytes each", float64(after-before)/1e6, analysis.DefaultMaxPending, per)
	if per > 96 {
		t.Errorf("%.0f bytes of live heap per pending goroutine, want at most 96", per)
	}
	runtime.KeepAlive(a)
}

// TestManySpawnStacks: past the distinct spawn stacks the analyzer keeps
// resolved, a goroutine's spawn stack is still the one reported with its
// break.
func TestManySpawnStacks(t *testing.T) {
	a := newAnalyzer(0)
	const distinct = 1<<14 + 10 // past the analyzer's maxStacks
	for i := range uint64(distinct) {
		mustNoBreak(t, a, spawn(i, 100+i, 1, retGoHandle, 0x900000+i))
	}
	mustNoBreak(t, a, spawn(distinct, 7, 1, retGoAudit, retServe))
	b := mustBreak(t, a, firstCheck(distinct+1, 7, event.Lost, retSQLConn, retAuditFunc))
	if want := []analysis.Frame{fGoAudit, fServe}; !reflect.DeepEqual(b.Spawn, want) {
		t.Errorf("Spawn = %v, want %v", b.Spawn, want)
	}
	b = mustBreak(t, a, firstCheck(distinct+2, 100+distinct-1, event.Lost, retSQLConn, retAuditFunc))
	if len(b.Spawn) != 2 || b.Spawn[0] != fGoHandle {
		t.Errorf("Spawn = %v, want %v first", b.Spawn, fGoHandle)
	}
	s := a.Snapshot()
	if ss := site(t, s, fGoHandle); ss.TracedSpawns != distinct || ss.Lost != 1 {
		t.Errorf("spawn site %+v, want %d traced, 1 lost", ss, distinct)
	}
	if ss := site(t, s, fGoAudit); ss.TracedSpawns != 1 || ss.Lost != 1 {
		t.Errorf("spawn site %+v, want 1 traced, 1 lost", ss)
	}
}
