package report

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ctxwatch/ctxwatch/internal/analysis"
	"github.com/ctxwatch/ctxwatch/internal/findings"
)

// HTMLOptions configure the HTML page.
type HTMLOptions struct {
	// SourceDir is where file names that are not absolute (a -trimpath
	// build's, by module path) are looked for; "" is the working
	// directory.
	SourceDir string
	// TraceURL, when set, links each trace id: "{trace_id}" in it is
	// replaced by the id, percent-encoded.
	TraceURL string
}

// maxPageProcesses bounds the processes a page keeps: ctxwatch node may
// run for weeks over short-lived programs. The oldest are let go first,
// and the page says how many.
const maxPageProcesses = 1000

// HTML is a findings.Sink that keeps the summaries and the first
// occurrence of each break, and writes them as one self-contained page
// (Write): inline CSS and SVG, no script, nothing fetched. Names from the
// target reach the page through html/template, so a function, file or
// executable name cannot add markup, and escaped as in the table, so it
// cannot hide in control characters. Its methods are called from one
// goroutine, as the watcher does.
type HTML struct {
	opts    HTMLOptions
	procs   []*pageProcess          // in order of first sight
	open    map[uint32]*pageProcess // by pid: processes not summarized yet
	omitted int                     // processes let go (maxPageProcesses)
}

// pageProcess is what the page shows of one process.
type pageProcess struct {
	proc   findings.Process
	sum    *findings.Summary // nil until the summary comes
	breaks []BreakLine
}

// NewHTML returns an empty page.
func NewHTML(opts HTMLOptions) *HTML {
	return &HTML{opts: opts, open: map[uint32]*pageProcess{}}
}

// Break keeps the first occurrence of each distinct break, as JSON prints it.
func (h *HTML) Break(p findings.Process, b analysis.Break) error {
	if !b.First {
		return nil
	}
	h.BreakLine(lineOf(p, b))
	return nil
}

// BreakLine keeps a break line read from a JSON report (ReadJSON).
func (h *HTML) BreakLine(b BreakLine) {
	p := h.process(b.Process)
	p.breaks = append(p.breaks, b)
}

// Summary keeps the summary of a process; its break lines are those that
// came before it for its pid.
func (h *HTML) Summary(s findings.Summary) error {
	p := h.process(s.Process)
	p.proc, p.sum = s.Process, &s
	delete(h.open, s.Process.PID)
	return nil
}

// Add keeps a line read from a JSON report.
func (h *HTML) Add(l Line) {
	switch {
	case l.Break != nil:
		h.BreakLine(*l.Break)
	case l.Summary != nil:
		h.Summary(*l.Summary)
	}
}

// process returns the process of p's pid that has no summary yet, or a
// new one.
func (h *HTML) process(p findings.Process) *pageProcess {
	if pp, ok := h.open[p.PID]; ok {
		return pp
	}
	if len(h.procs) >= maxPageProcesses {
		h.evict()
	}
	pp := &pageProcess{proc: p}
	h.procs = append(h.procs, pp)
	h.open[p.PID] = pp
	return pp
}

// evict lets go of the oldest summarized process, or the oldest one.
func (h *HTML) evict() {
	i := 0
	for j, p := range h.procs {
		if p.sum != nil {
			i = j
			break
		}
	}
	if p := h.procs[i]; p.sum == nil && h.open[p.proc.PID] == p {
		delete(h.open, p.proc.PID)
	}
	h.procs = append(h.procs[:i], h.procs[i+1:]...)
	h.omitted++
}

//go:embed html.tmpl
var pageTemplateText string

var pageTemplate = template.Must(template.New("page").Parse(pageTemplateText))

// Write writes the page.
func (h *HTML) Write(w io.Writer) error {
	v := pageView{Omitted: h.omitted, Generated: time.Now().UTC().Format("2006-01-02 15:04:05 UTC")}
	src := newSourceReader(h.opts.SourceDir)
	for i, p := range h.procs {
		v.Processes = append(v.Processes, h.processView(i, p, src))
		v.Breaks += len(v.Processes[i].Breaks)
	}
	if err := pageTemplate.Execute(w, v); err != nil {
		return fmt.Errorf("write the HTML report: %w", err)
	}
	return nil
}

type pageView struct {
	Generated string
	Processes []processView
	Breaks    int
	Omitted   int
}

type processView struct {
	ID          string // the section's id, the prefix of its anchors
	PID         uint32
	Executable  string
	HasSummary  bool
	Run         string // the run line, as the table's
	Identity    string // container and pod, in node mode
	Incomplete  string
	Counts      []countView
	Notes       []string
	Flow        flowGraph
	Sites       []siteView
	LogSites    []logSiteView
	SendSites   []siteView // lines that sent channel elements inside a trace (Traced: handed)
	Breaks      []breakView
	Sources     []sourceView
	sourceIndex map[string]string // by FILE:LINE
}

type countView struct {
	Name  string
	Value uint64
}

// logSiteView is a line that wrote log records inside a trace.
type logSiteView struct {
	Site                  string // FILE:LINE
	Label, Title, SrcID   string
	Inside, With, Without uint64
}

type siteView struct {
	Site                                   string // FILE:LINE
	Label, Title, SrcID                    string
	Traced, Kept, Lost, NewRoot, NotJudged uint64
	Retention                              string
	Bar                                    []barPart
}

// barPart is a segment of a retention bar.
type barPart struct {
	Class string
	X, W  float64
}

type breakView struct {
	Kind                   string
	Site                   string // FILE:LINE
	Count                  string // "" for a break line without its summary
	Label, Title, SrcID    string
	SpawnedAt              *frameView
	TraceID, TraceURL      string
	OtherTraceID, OtherURL string
	After                  string
	Stack, Spawn, Handoff  []frameView
}

type frameView struct {
	Label, Title, SrcID string
	Lib                 bool // not your code
}

type sourceView struct {
	ID, Site, Caption, Path string
	Lines                   []srcLine
}

func (h *HTML) processView(i int, p *pageProcess, src *sourceReader) processView {
	v := processView{
		ID:          fmt.Sprintf("p%d", i),
		PID:         p.proc.PID,
		Executable:  Printable(p.proc.Executable),
		sourceIndex: map[string]string{},
	}
	if p.proc.ContainerID != "" || p.proc.PodUID != "" {
		v.Identity = fmt.Sprintf("container %s, pod %s", Printable(p.proc.ContainerID), Printable(p.proc.PodUID))
	}
	if p.sum == nil {
		// The watch ended before this process's summary: its breaks as
		// they were first seen, and no counts.
		for _, l := range p.breaks {
			b := analysis.BreakCount{Kind: l.Kind, Site: l.Site, Stack: l.Stack, Spawn: l.Spawn, Handoff: l.Handoff, TraceID: l.TraceID}
			v.Breaks = append(v.Breaks, h.breakView(&v, src, b, false, &l))
		}
		return v
	}
	s := p.sum
	v.HasSummary = true
	v.Run = runLine(s)
	v.Incomplete = s.Incomplete()
	v.Counts = []countView{
		{"probe hits", s.ProbeHits}, {"not judged", s.NeverJudged},
		{"first checks without their spawn", s.Unmatched}, {"pending forgotten", s.Forgotten},
		{"states evicted", s.StatesEvicted},
	}
	for _, n := range s.Notes {
		v.Notes = append(v.Notes, Printable(n))
	}
	v.Flow = buildFlow(s)
	for _, site := range s.SpawnSites {
		v.Sites = append(v.Sites, siteRow(&v, src, site))
	}
	for _, site := range s.HandoffSites {
		v.SendSites = append(v.SendSites, siteRow(&v, src, analysis.SpawnSite{Site: site.Site, TracedSpawns: site.Handed,
			Propagated: site.Propagated, Lost: site.Lost, NewRoot: site.NewRoot, NeverJudged: site.NeverJudged}))
	}
	for _, site := range s.LogSites {
		v.LogSites = append(v.LogSites, logSiteView{
			Site: frameKey(site.Site), Label: frameLabel(site.Site), Title: frameTitle(site.Site),
			SrcID:  v.source(src, site.Site),
			Inside: site.InsideTrace, With: site.WithTrace, Without: site.WithoutTrace,
		})
	}
	for _, b := range s.Breaks {
		v.Breaks = append(v.Breaks, h.breakView(&v, src, b, true, matchBreakLine(p.breaks, b)))
	}
	return v
}

// runLine is the table's first line: what was watched, for how long, and
// what share of it the probes saw.
func runLine(s *findings.Summary) string {
	var b strings.Builder
	fmt.Fprintf(&b, "pid %d %s", s.Process.PID, Printable(s.Executable))
	if s.GoVersion != "" {
		fmt.Fprintf(&b, " (%s)", Printable(s.GoVersion))
	}
	fmt.Fprintf(&b, ", %.1fs, %d events, %d lost", s.DurationS, s.Events, s.EventsLost)
	if s.Budget != nil {
		fmt.Fprintf(&b, ", probes in %.1f%% of the time (budget %g%%): counts cover that share only",
			100*s.SampledFraction, 100*s.Budget.Budget)
	}
	return b.String()
}

func siteRow(v *processView, src *sourceReader, site analysis.SpawnSite) siteView {
	sv := siteView{
		Site:  frameKey(site.Site),
		Label: frameLabel(site.Site), Title: frameTitle(site.Site),
		SrcID:  v.source(src, site.Site),
		Traced: site.TracedSpawns, Kept: site.Propagated, Lost: site.Lost, NewRoot: site.NewRoot,
		NotJudged: site.NeverJudged,
		Retention: "-",
	}
	if r := site.Retention(); r >= 0 {
		sv.Retention = fmt.Sprintf("%.1f%%", 100*r)
	}
	total := max(site.TracedSpawns, site.Propagated+site.Lost+site.NewRoot)
	x := 0.0
	for _, part := range []struct {
		class string
		n     uint64
	}{{"kept", site.Propagated}, {"lost", site.Lost}, {"newroot", site.NewRoot}, {"notjudged", site.NeverJudged}} {
		if part.n == 0 || total == 0 {
			continue
		}
		w := barWidth * float64(part.n) / float64(total)
		sv.Bar = append(sv.Bar, barPart{Class: part.class, X: x, W: w})
		x += w
	}
	return sv
}

// barWidth is the width of a retention bar, in pixels.
const barWidth = 160

// matchBreakLine finds the break line of a summary's break: the first
// occurrence, with the same kind, site and trace.
func matchBreakLine(lines []BreakLine, b analysis.BreakCount) *BreakLine {
	for i := range lines {
		l := &lines[i]
		if l.Kind == b.Kind && l.Site == b.Site && l.TraceID == b.TraceID {
			return l
		}
	}
	return nil
}

// breakView shows a break of a summary (counted) or, for a process without
// one, a break line; line adds what only the first occurrence tells.
func (h *HTML) breakView(v *processView, src *sourceReader, b analysis.BreakCount, counted bool, line *BreakLine) breakView {
	bv := breakView{
		Kind:  Printable(string(b.Kind)),
		Site:  frameKey(b.Site),
		Label: frameLabel(b.Site), Title: frameTitle(b.Site),
		SrcID:    v.source(src, b.Site),
		TraceID:  Printable(b.TraceID),
		TraceURL: h.traceURL(b.TraceID),
	}
	if counted {
		bv.Count = strconv.FormatUint(b.Count, 10)
	}
	for _, f := range b.Stack {
		bv.Stack = append(bv.Stack, v.frame(src, f))
	}
	for _, f := range b.Spawn {
		bv.Spawn = append(bv.Spawn, v.frame(src, f))
	}
	for _, f := range b.Handoff {
		bv.Handoff = append(bv.Handoff, v.frame(src, f))
	}
	origin := b.Spawn
	if len(origin) == 0 {
		origin = b.Handoff
	}
	if len(origin) > 0 {
		// The spawn (or send) site: the innermost frame of your code.
		at := origin[0]
		for _, f := range origin {
			if userLike(f) {
				at = f
				break
			}
		}
		fv := v.frame(src, at)
		bv.SpawnedAt = &fv
	}
	if line != nil {
		bv.OtherTraceID, bv.OtherURL = Printable(line.OtherTraceID), h.traceURL(line.OtherTraceID)
		if line.AfterNS > 0 {
			bv.After = formatAfter(line.AfterNS)
		}
	}
	return bv
}

// frame shows a frame of a stack. Library frames (the runtime's, net/http's
// under a handler) are dimmed and get no excerpt: the page would fill with
// the standard library's source.
func (v *processView) frame(src *sourceReader, f analysis.Frame) frameView {
	fv := frameView{Label: frameLabel(f), Title: frameTitle(f), Lib: !userLike(f)}
	if !fv.Lib {
		fv.SrcID = v.source(src, f)
	}
	return fv
}

// source returns the anchor of the excerpt of f's line, adding it to the
// process's sources, or "" when the file cannot be read here.
func (v *processView) source(src *sourceReader, f analysis.Frame) string {
	key := frameKey(f)
	if id, ok := v.sourceIndex[key]; ok {
		return id
	}
	id := ""
	if lines, path := src.excerpt(f.File, f.Line); lines != nil {
		id = fmt.Sprintf("%s-src%d", v.ID, len(v.Sources))
		v.Sources = append(v.Sources, sourceView{
			ID: id, Site: key, Caption: frameLabel(f), Path: Printable(path), Lines: lines,
		})
	}
	v.sourceIndex[key] = id
	return id
}

// traceURL fills in --trace-url for a trace id, or is "" without one.
// The id is percent-encoded whole: a user key's trace value is text of
// the target's choosing.
func (h *HTML) traceURL(id string) string {
	if h.opts.TraceURL == "" || id == "" {
		return ""
	}
	return strings.ReplaceAll(h.opts.TraceURL, "{trace_id}", escapeURLComponent(id))
}

// escapeURLComponent percent-encodes every byte but the unreserved ones
// of RFC 3986, so the result is one path segment or query value wherever
// the template puts it.
func escapeURLComponent(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func formatAfter(ns uint64) string {
	d := time.Duration(ns)
	if d >= time.Millisecond {
		d = d.Round(time.Microsecond)
	}
	return d.String()
}

// frameKey is a frame's data-site: FILE:LINE, the file as the report
// names it.
func frameKey(f analysis.Frame) string {
	return Printable(f.File) + ":" + strconv.Itoa(f.Line)
}

// frameLabel names a frame as the table does: function base.go:line.
func frameLabel(f analysis.Frame) string {
	return Printable(f.Function) + " " + Printable(filepath.Base(f.File)) + ":" + strconv.Itoa(f.Line)
}

// frameTitle names a frame in full, for a tooltip.
func frameTitle(f analysis.Frame) string {
	return Printable(f.Function) + " " + frameKey(f)
}
