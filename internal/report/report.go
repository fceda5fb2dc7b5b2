// Package report writes ctxwatch's findings for people (a table) and for
// scripts (JSON lines, the contract of DESIGN.md section 3).
package report

import (
	"github.com/ctxwatch/ctxwatch/internal/analysis"
)

// Process describes one watched process.
type Process struct {
	PID        uint32
	Executable string
	// Set in node mode; empty when the process is in no container.
	ContainerID, PodUID string
}

// Summary is the end-of-run account of one process.
type Summary struct {
	Process
	analysis.Snapshot
	DurationS float64
	// EventsLost counts what the probes could not deliver (ring buffer
	// full) or store (goroutine state map full).
	EventsLost uint64
	// ProbeHits counts the uprobe hits in the process: each one is a trap
	// into the kernel that the target pays for.
	ProbeHits uint64
	// Dropped exporter spans and other sinks' losses, by name.
	Notes []string
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
