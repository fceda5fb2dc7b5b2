// Package findings is what ctxwatch found, as every output takes it: the
// breaks as they happen and a summary per process at its end. The table
// and JSON lines (internal/report) and the OTLP exporter and metrics
// (internal/export) are its Sinks, side by side.
package findings

import (
	"fmt"
	"strings"

	"github.com/ctxwatch/ctxwatch/internal/analysis"
)

// Process describes one watched process.
type Process struct {
	PID        uint32
	Executable string
	// Set in node mode; empty when the process is in no container.
	ContainerID, PodUID string
	// NodeName is the Kubernetes node's name in node mode (NODE_NAME).
	NodeName string
	// ServiceName is the process's own OTEL_SERVICE_NAME, empty when unset;
	// GoVersion is from its build info (e.g. "go1.26.8"). Exporters use
	// them for the resource of the break spans.
	ServiceName, GoVersion string
}

// Summary is the end-of-run account of one process.
type Summary struct {
	Process
	analysis.Snapshot
	DurationS float64
	// EventsLost counts what the probes could not deliver (ring buffer
	// full) or store (goroutine state map full).
	EventsLost uint64
	// StatesEvicted counts the goroutine states the probes' LRU map
	// dropped to make room, mostly of goroutines that had exited (there is
	// no exit hook), so it does not make the verdicts incomplete: which
	// were still in use cannot be counted. Known at the end only.
	StatesEvicted uint64
	// ProbeHits counts the uprobe hits in the process: each one is a trap
	// into the kernel that the target pays for.
	ProbeHits uint64
	// SampledFraction is the share of the watch during which the probes
	// were attached: 1 without --overhead-budget, less when the budget
	// duty-cycled them. Counts (spawns, breaks) cover only that share.
	SampledFraction float64
	// Budget accounts for --overhead-budget; nil when it is off.
	Budget *BudgetStats
	// Dropped exporter spans and other sinks' losses, by name.
	Notes []string
	// Export accounts for the break spans sent to a collector; nil when
	// nothing is exported.
	Export *ExportStats
}

// Incomplete says, for people, why the verdicts leave goroutines out, or
// is empty when nothing seen was left out: events the probes could not
// deliver or store, and first checks whose spawn was not seen (its event
// lost, or the analysis had forgotten it). The breaks that were seen are
// reported all the same.
func (s *Summary) Incomplete() string {
	var why []string
	if s.EventsLost > 0 {
		why = append(why, fmt.Sprintf("%d events lost", s.EventsLost))
	}
	if s.Unmatched > 0 {
		why = append(why, fmt.Sprintf("%d first checks without their spawn", s.Unmatched))
	}
	if len(why) == 0 {
		return ""
	}
	return "verdicts incomplete: " + strings.Join(why, ", ")
}

// BudgetStats is the account of an overhead budget (see internal/budget
// for the definitions).
type BudgetStats struct {
	// Budget is the overhead allowed, a fraction (0.01 for 1%).
	Budget float64 `json:"overhead_budget"`
	// Overhead is the estimated probe time / (wall time × CPUs of the target).
	Overhead float64 `json:"estimated_overhead"`
	// HitCostNS is the cost of one probe hit used for the estimate, in ns.
	HitCostNS float64 `json:"hit_cost_ns"`
	// CycleCostNS is what one duty cycle (all probes out, then back in)
	// is charged, in ns.
	CycleCostNS float64 `json:"cycle_cost_ns"`
	// CPUs is the number of CPUs the target may run on.
	CPUs int `json:"cpus"`
	// Detaches counts the times the probes were taken out.
	Detaches int `json:"detaches"`
}

// ExportStats counts the break spans of one process on their way to a
// collector. Sent + Dropped + Suppressed = occurrences of breaks.
type ExportStats struct {
	// Sent is the number of spans the collector accepted.
	Sent uint64 `json:"spans_sent"`
	// Dropped is the number of spans made but not accepted: queue full,
	// or export failed after its retries.
	Dropped uint64 `json:"spans_dropped"`
	// Suppressed is the number of occurrences not made into spans by the
	// per-site rate limit (each is counted on the site's next span).
	Suppressed uint64 `json:"suppressed"`
}

// Sink receives findings as they happen. Every occurrence of a break is
// passed on (exporters rate-limit; the JSON writer prints each distinct
// break once); Summary is called once per process at the end.
type Sink interface {
	Break(Process, analysis.Break) error
	Summary(Summary) error
}

// Live is implemented by sinks that show the analysis while it runs.
type Live interface {
	Refresh([]Summary) error
}

// MultiLive passes refreshes to several live views.
type MultiLive []Live

func (m MultiLive) Refresh(sums []Summary) error {
	var first error
	for _, l := range m {
		if err := l.Refresh(sums); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Multi passes everything to several sinks.
type Multi []Sink

func (m Multi) Break(p Process, b analysis.Break) error {
	var first error
	for _, s := range m {
		if err := s.Break(p, b); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (m Multi) Summary(s Summary) error {
	var first error
	for _, k := range m {
		if err := k.Summary(s); err != nil && first == nil {
			first = err
		}
	}
	return first
}
