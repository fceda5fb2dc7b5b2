package agent

import (
	"testing"
	"time"

	"github.com/ctxwatch/ctxwatch/internal/uprobe"
)

// TestHitCostCharged: a process whose probes are all emulated is charged
// the emulated cost per hit; one single-stepped probe (a fallback) makes
// every hit of it charged the single-stepped cost, except for a probe
// whose hits are counted apart, charged apart.
func TestHitCostCharged(t *testing.T) {
	b := &overheadBudget{fraction: 0.01, cost: uprobe.HitCost{Emulated: 6 * time.Microsecond, Stepped: 20 * time.Microsecond}}
	emulated := []uprobe.Point{{Program: uprobe.WithValue}, {Program: uprobe.Spawn}}
	if got := b.hitCost(emulated); got != 6*time.Microsecond {
		t.Errorf("all emulated: charged %s per hit, want 6µs", got)
	}
	stepped := append(emulated, uprobe.Point{Program: uprobe.Spawn, Stepped: true})
	if got := b.hitCost(stepped); got != 20*time.Microsecond {
		t.Errorf("one single-stepped: charged %s per hit, want 20µs", got)
	}
	// The log record probe is single-stepped, its hits counted apart: the
	// others stay at the emulated cost, and each of its hits is charged
	// the single-stepped cost (6µs + 14/6 of 6µs).
	logged := append(emulated, uprobe.Point{Program: uprobe.SlogHandle, Stepped: true, CountedApart: true})
	cost := b.hitCost(logged)
	if cost != 6*time.Microsecond {
		t.Errorf("with the log record probe: charged %s per hit, want 6µs", cost)
	}
	// 100 hits, 30 of them single-stepped: 70×6µs + 30×20µs = 1020µs.
	if got := time.Duration(chargedHits(100, 30, b.steppedExtra(cost))) * cost; got != 1020*time.Microsecond {
		t.Errorf("100 hits, 30 single-stepped: charged %s, want 1.02ms", got)
	}
	if got := chargedHits(100, 30, b.steppedExtra(20*time.Microsecond)); got != 100 {
		t.Errorf("every hit charged the single-stepped cost already: %d hits charged, want 100", got)
	}
}
