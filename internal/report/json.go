// Package report writes ctxwatch's findings for people (a table) and for
// scripts (JSON lines, the contract of docs/design.md).
package report

import (
	"encoding/json"
	"io"
	"slices"

	"github.com/ctxwatch/ctxwatch/internal/analysis"
	"github.com/ctxwatch/ctxwatch/internal/findings"
)

// JSON writes one object per line: a "break" line at the first occurrence
// of each distinct break, and a "summary" line per process at the end.
type JSON struct {
	enc *json.Encoder
}

// NewJSON writes JSON lines to w.
func NewJSON(w io.Writer) *JSON { return &JSON{enc: json.NewEncoder(w)} }

type jsonBreak struct {
	Type            string           `json:"type"`
	Kind            analysis.Kind    `json:"kind"`
	PID             uint32           `json:"pid"`
	ContainerID     string           `json:"container_id,omitempty"`
	PodUID          string           `json:"pod_uid,omitempty"`
	TraceID         string           `json:"trace_id"`
	OtherTraceID    string           `json:"other_trace_id,omitempty"`
	ParentSpanID    string           `json:"parent_span_id,omitempty"`
	SpanID          string           `json:"span_id,omitempty"`
	Goroutine       uint64           `json:"goroutine"`
	ParentGoroutine uint64           `json:"parent_goroutine,omitempty"`
	Site            analysis.Frame   `json:"site"`
	Stack           []analysis.Frame `json:"stack,omitempty"`
	Spawn           []analysis.Frame `json:"spawn,omitempty"`
	Handoff         []analysis.Frame `json:"handoff,omitempty"`
	AfterNS         uint64           `json:"after_ns,omitempty"`
}

// Break prints the first occurrence of each distinct break.
func (j *JSON) Break(p findings.Process, b analysis.Break) error {
	if !b.First {
		return nil
	}
	l := lineOf(p, b)
	return j.enc.Encode(jsonBreak{
		Type:            "break",
		Kind:            l.Kind,
		PID:             l.Process.PID,
		ContainerID:     l.Process.ContainerID,
		PodUID:          l.Process.PodUID,
		TraceID:         l.TraceID,
		OtherTraceID:    l.OtherTraceID,
		ParentSpanID:    l.ParentSpanID,
		SpanID:          l.SpanID,
		Goroutine:       l.Goroutine,
		ParentGoroutine: l.ParentGoroutine,
		Site:            l.Site,
		Stack:           l.Stack,
		Spawn:           l.Spawn,
		Handoff:         l.Handoff,
		AfterNS:         l.AfterNS,
	})
}

type jsonSpawnSite struct {
	analysis.SpawnSite
	Retention *float64 `json:"retention"` // null until a goroutine of the site was judged
}

type jsonHandoffSite struct {
	analysis.HandoffSite
	Retention *float64 `json:"retention"` // null until a receiver of the site was judged
}

type jsonStartSite struct {
	analysis.StartSite
	Retention *float64 `json:"retention"` // null until a span was started on an own parent
}

type jsonSummary struct {
	Type         string                `json:"type"`
	PID          uint32                `json:"pid"`
	Executable   string                `json:"executable"`
	GoVersion    string                `json:"go_version,omitempty"`
	ContainerID  string                `json:"container_id,omitempty"`
	PodUID       string                `json:"pod_uid,omitempty"`
	DurationS    float64               `json:"duration_s"`
	Events       uint64                `json:"events"`
	EventsLost   uint64                `json:"events_lost"`
	Incomplete   bool                  `json:"incomplete"`
	Evicted      uint64                `json:"states_evicted"`
	Forgotten    uint64                `json:"pending_forgotten"`
	ProbeHits    uint64                `json:"probe_hits"`
	Sampled      float64               `json:"sampled_fraction"`
	Budget       *findings.BudgetStats `json:"budget,omitempty"`
	Unmatched    uint64                `json:"unmatched_checks"`
	NeverJudged  uint64                `json:"never_judged"`
	SpawnSites   []jsonSpawnSite       `json:"spawn_sites"`
	HandoffSites []jsonHandoffSite     `json:"handoff_sites"`
	LogSites     []analysis.LogSite    `json:"log_sites"`
	StartSites   []jsonStartSite       `json:"start_sites"`
	Breaks       []analysis.BreakCount `json:"breaks"`
	Notes        []string              `json:"notes,omitempty"`
	Export       *findings.ExportStats `json:"export,omitempty"`
}

// Summary prints the summary line of a process.
func (j *JSON) Summary(s findings.Summary) error {
	out := jsonSummary{
		Type:         "summary",
		PID:          s.Process.PID,
		Executable:   s.Executable,
		GoVersion:    s.GoVersion,
		ContainerID:  s.ContainerID,
		PodUID:       s.PodUID,
		DurationS:    s.DurationS,
		Events:       s.Events,
		EventsLost:   s.EventsLost,
		Evicted:      s.StatesEvicted,
		Forgotten:    s.Forgotten,
		ProbeHits:    s.ProbeHits,
		Sampled:      s.SampledFraction,
		Budget:       s.Budget,
		Unmatched:    s.Unmatched,
		NeverJudged:  s.NeverJudged,
		SpawnSites:   []jsonSpawnSite{},
		HandoffSites: []jsonHandoffSite{},
		LogSites:     s.LogSites,
		StartSites:   []jsonStartSite{},
		Breaks:       s.Breaks,
		Notes:        s.Notes,
		Export:       s.Export,
	}
	if why := s.Incomplete(); why != "" {
		out.Incomplete = true
		out.Notes = append(slices.Clip(out.Notes), why)
	}
	if out.Breaks == nil {
		out.Breaks = []analysis.BreakCount{}
	}
	if out.LogSites == nil {
		out.LogSites = []analysis.LogSite{}
	}
	for _, site := range s.SpawnSites {
		js := jsonSpawnSite{SpawnSite: site}
		if r := site.Retention(); r >= 0 {
			js.Retention = &r
		}
		out.SpawnSites = append(out.SpawnSites, js)
	}
	for _, site := range s.HandoffSites {
		js := jsonHandoffSite{HandoffSite: site}
		if r := site.Retention(); r >= 0 {
			js.Retention = &r
		}
		out.HandoffSites = append(out.HandoffSites, js)
	}
	for _, site := range s.StartSites {
		js := jsonStartSite{StartSite: site}
		if r := site.Retention(); r >= 0 {
			js.Retention = &r
		}
		out.StartSites = append(out.StartSites, js)
	}
	return j.enc.Encode(out)
}
