package agent

import (
	"testing"
	"time"

	"github.com/ctxwatch/ctxwatch/internal/uprobe"
)

// TestHitCostCharged: a process whose probes are all emulated is charged
// the emulated cost per hit; one single-stepped probe (a fallback) makes
// every hit of it charged the single-stepped cost.
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
}
