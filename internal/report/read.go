package report

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/ctxwatch/ctxwatch/internal/analysis"
	"github.com/ctxwatch/ctxwatch/internal/findings"
)

// BreakLine is a "break" line of the JSON report: the first occurrence of
// a distinct break, with the traces as their labels. A live watch gets an
// analysis.Break instead; both reach the HTML page as a BreakLine.
type BreakLine struct {
	Process      findings.Process
	Kind         analysis.Kind
	TraceID      string
	OtherTraceID string
	// stale-parent: the ended parent span and the span started on it, in
	// hex (the trace is TraceID).
	ParentSpanID, SpanID string
	Goroutine            uint64
	ParentGoroutine      uint64
	Site                 analysis.Frame
	Stack                []analysis.Frame
	Spawn                []analysis.Frame
	Handoff              []analysis.Frame // lost-at-handoff: the send's stack
	AfterNS              uint64
}

// Line is one line of a JSON report: a break or a summary.
type Line struct {
	Break   *BreakLine
	Summary *findings.Summary
}

// ReadJSON reads what JSON wrote (ctxwatch --format json), in order. It
// rejects a line that is not JSON or not of a known type, naming the line:
// a page made from half a file would look complete.
func ReadJSON(r io.Reader) ([]Line, error) {
	var out []Line
	br := bufio.NewReader(r)
	for n := 1; ; n++ {
		text, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(text)) > 0 {
			l, perr := parseLine(text)
			if perr != nil {
				return out, fmt.Errorf("read JSON report: line %d: %w", n, perr)
			}
			out = append(out, l)
		}
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("read JSON report: %w", err)
		}
	}
}

func parseLine(text []byte) (Line, error) {
	var typ struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(text, &typ); err != nil {
		return Line{}, err
	}
	switch typ.Type {
	case "break":
		var j jsonBreak
		if err := json.Unmarshal(text, &j); err != nil {
			return Line{}, err
		}
		return Line{Break: breakFromJSON(&j)}, nil
	case "summary":
		var j jsonSummary
		if err := json.Unmarshal(text, &j); err != nil {
			return Line{}, err
		}
		return Line{Summary: summaryFromJSON(&j)}, nil
	}
	return Line{}, fmt.Errorf("unknown line type %q", typ.Type)
}

// lineOf is the break line of the first occurrence b of a break in p: what
// the JSON writer prints and the page shows, the traces as their labels.
func lineOf(p findings.Process, b analysis.Break) BreakLine {
	l := BreakLine{
		Process:         p,
		Kind:            b.Kind,
		TraceID:         b.Trace.Label(),
		OtherTraceID:    b.Other.Label(),
		Goroutine:       b.Goroutine,
		ParentGoroutine: b.ParentGoroutine,
		Site:            b.Site,
		Stack:           b.Stack,
		Spawn:           b.Spawn,
		Handoff:         b.Handoff,
		AfterNS:         b.After(),
	}
	if b.Kind == analysis.StaleParent {
		// One trace: the new span is a child of the ended one in it.
		l.OtherTraceID = ""
		l.ParentSpanID = hex.EncodeToString(b.Trace.Span[:])
		l.SpanID = hex.EncodeToString(b.Other.Span[:])
	}
	return l
}

func breakFromJSON(j *jsonBreak) *BreakLine {
	return &BreakLine{
		Process:         findings.Process{PID: j.PID, ContainerID: j.ContainerID, PodUID: j.PodUID},
		Kind:            j.Kind,
		TraceID:         j.TraceID,
		OtherTraceID:    j.OtherTraceID,
		ParentSpanID:    j.ParentSpanID,
		SpanID:          j.SpanID,
		Goroutine:       j.Goroutine,
		ParentGoroutine: j.ParentGoroutine,
		Site:            j.Site,
		Stack:           j.Stack,
		Spawn:           j.Spawn,
		Handoff:         j.Handoff,
		AfterNS:         j.AfterNS,
	}
}

func summaryFromJSON(j *jsonSummary) *findings.Summary {
	s := &findings.Summary{
		Process: findings.Process{PID: j.PID, Executable: j.Executable, GoVersion: j.GoVersion,
			ContainerID: j.ContainerID, PodUID: j.PodUID},
		Snapshot: analysis.Snapshot{PID: j.PID, Events: j.Events, Unmatched: j.Unmatched,
			Forgotten: j.Forgotten, NeverJudged: j.NeverJudged, Breaks: j.Breaks, LogSites: j.LogSites},
		DurationS:       j.DurationS,
		EventsLost:      j.EventsLost,
		StatesEvicted:   j.Evicted,
		ProbeHits:       j.ProbeHits,
		SampledFraction: j.Sampled,
		Budget:          j.Budget,
		Notes:           j.Notes,
		Export:          j.Export,
	}
	if len(s.LogSites) == 0 {
		s.LogSites = nil // as the analysis leaves it
	}
	for _, site := range j.SpawnSites {
		s.SpawnSites = append(s.SpawnSites, site.SpawnSite) // retention follows from the counts
	}
	for _, site := range j.HandoffSites {
		s.HandoffSites = append(s.HandoffSites, site.HandoffSite)
	}
	for _, site := range j.StartSites {
		s.StartSites = append(s.StartSites, site.StartSite)
	}
	// JSON adds the incomplete note to the notes; the summary says it
	// itself (Incomplete), so a page would show it twice.
	if why := s.Incomplete(); why != "" && len(s.Notes) > 0 && s.Notes[len(s.Notes)-1] == why {
		s.Notes = slices.Clip(s.Notes[:len(s.Notes)-1])
	}
	if len(s.Notes) == 0 {
		s.Notes = nil
	}
	if len(s.Breaks) == 0 {
		s.Breaks = nil
	}
	return s
}
