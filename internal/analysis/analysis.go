// Package analysis turns the probes' events for one process into the
// verdicts of DESIGN.md: breaks at their source lines and per-spawn-site
// retention. It is pure Go (no eBPF, no OTel), so it is tested from
// recorded event streams.
package analysis

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/ctxwatch/ctxwatch/internal/event"
)

// Kind is a break kind; the strings are the JSON contract.
type Kind string

const (
	LostAtSpawn Kind = "lost-at-spawn"
	NewRoot     Kind = "new-root"
	Dropped     Kind = "dropped"
	Overwritten Kind = "overwritten"
)

// Frame is a source location.
type Frame struct {
	Function string `json:"function"`
	File     string `json:"file"`
	Line     int    `json:"line"`
}

func (f Frame) String() string { return fmt.Sprintf("%s (%s:%d)", f.Function, f.File, f.Line) }

// Resolver turns a return address captured in the target into the logical
// frames of its call site, innermost (inlined) first.
type Resolver interface {
	FramesForReturn(ret uint64) []Frame
}

// Options configure an Analyzer.
type Options struct {
	Resolver Resolver
	// IsUser says whether a function is user code, whose frames are the
	// sites reported.
	IsUser func(function string) bool
	// MaxPending bounds the spawned goroutines remembered until their
	// first check (the oldest are forgotten first). Zero means 1<<18.
	MaxPending int
}

// Break is one occurrence of a break.
type Break struct {
	Kind            Kind
	PID             uint32
	Trace           event.Trace // the trace that broke
	Other           event.Trace // new-root: the new trace; overwritten: the overwriting value
	Goroutine       uint64
	ParentGoroutine uint64
	Site            Frame   // where it was seen: the innermost user frame of the check
	Spawn           []Frame // the spawn stack, go statement first; nil for dropped and overwritten
	SpawnTime, Time uint64  // CLOCK_MONOTONIC ns; SpawnTime 0 when not spawned in a trace
	// First is set on the first occurrence of this kind, site and spawn site.
	First bool
	// Count is the number of occurrences so far, this one included.
	Count uint64
}

// SpawnSite counts what became of the goroutines started at one line.
type SpawnSite struct {
	Site         Frame  `json:"site"`
	TracedSpawns uint64 `json:"traced_spawns"`
	Propagated   uint64 `json:"propagated"`
	Lost         uint64 `json:"lost"`
	NewRoot      uint64 `json:"new_root"`
}

// Retention is propagated / (propagated + lost + new roots), or -1 when no
// goroutine of the site has been judged yet.
func (s *SpawnSite) Retention() float64 {
	n := s.Propagated + s.Lost + s.NewRoot
	if n == 0 {
		return -1
	}
	return float64(s.Propagated) / float64(n)
}

// BreakCount is one distinct break with its number of occurrences.
type BreakCount struct {
	Kind    Kind    `json:"kind"`
	Site    Frame   `json:"site"`
	Spawn   []Frame `json:"spawn,omitempty"`
	Count   uint64  `json:"count"`
	TraceID string  `json:"trace_id"` // of the first occurrence
}

// Snapshot is the analysis so far.
type Snapshot struct {
	PID        uint32
	Events     uint64
	Unmatched  uint64 // first checks whose spawn was not seen (forgotten or lost)
	SpawnSites []SpawnSite
	Breaks     []BreakCount
}

type breakKey struct {
	kind      Kind
	site      Frame
	spawnSite Frame
}

type pending struct {
	site   int // index into spawnSites
	stack  []Frame
	parent uint64
	time   uint64
}

// Analyzer holds the analysis of one process. Not safe for concurrent use.
type Analyzer struct {
	pid           uint32
	opts          Options
	frames        map[uint64][]Frame // resolved return addresses
	siteIndex     map[Frame]int
	spawnSites    []SpawnSite
	pending       map[uint64]pending
	stacks        map[stackKey][]Frame // spawn stacks, resolved once per distinct stack
	order         []uint64             // goroutines in pending, oldest first (may hold stale ids)
	breaks        map[breakKey]*BreakCount
	breakOrder    []breakKey
	events        uint64
	unmatched     uint64
	runtimeSpawns uint64
}

// New returns an Analyzer for process pid.
func New(pid uint32, opts Options) *Analyzer {
	if opts.MaxPending == 0 {
		opts.MaxPending = 1 << 18
	}
	return &Analyzer{
		pid:       pid,
		opts:      opts,
		frames:    map[uint64][]Frame{},
		siteIndex: map[Frame]int{},
		pending:   map[uint64]pending{},
		stacks:    map[stackKey][]Frame{},
		breaks:    map[breakKey]*BreakCount{},
	}
}

// stackKey is a captured stack, as a map key.
type stackKey struct {
	n   int
	pcs [event.StackDepth]uint64
}

// maxStacks bounds the spawn stacks kept resolved.
const maxStacks = 1 << 14

// spawnStack returns the spawn stack of e, resolved and trimmed once per
// distinct stack: goroutines started at the same place share it (read-only),
// and a spawn allocates nothing once its stack has been seen.
func (a *Analyzer) spawnStack(e *event.Event) []Frame {
	k := stackKey{n: e.NStack, pcs: e.Stack}
	for i := e.NStack; i < len(k.pcs); i++ {
		k.pcs[i] = 0
	}
	if st, ok := a.stacks[k]; ok {
		return st
	}
	st := spawnStack(a.stack(e.Frames()))
	if len(a.stacks) >= maxStacks {
		clear(a.stacks)
	}
	a.stacks[k] = st
	return st
}

// stack resolves return addresses into logical frames, innermost first.
func (a *Analyzer) stack(pcs []uint64) []Frame {
	var out []Frame
	for _, pc := range pcs {
		fs, ok := a.frames[pc]
		if !ok {
			fs = a.opts.Resolver.FramesForReturn(pc)
			a.frames[pc] = fs
		}
		out = append(out, fs...)
	}
	return out
}

// userFrame is the innermost frame of user code, or the innermost frame
// when there is none.
func (a *Analyzer) userFrame(frames []Frame) (Frame, bool) {
	for _, f := range frames {
		if a.opts.IsUser(f.Function) {
			return f, true
		}
	}
	if len(frames) > 0 {
		return frames[0], false
	}
	return Frame{Function: "?"}, false
}

func (a *Analyzer) site(f Frame) int {
	i, ok := a.siteIndex[f]
	if !ok {
		i = len(a.spawnSites)
		a.siteIndex[f] = i
		a.spawnSites = append(a.spawnSites, SpawnSite{Site: f})
	}
	return i
}

// Handle analyses one event and returns the break it shows, if any.
func (a *Analyzer) Handle(e *event.Event) (Break, bool) {
	a.events++
	switch e.Kind {
	case event.Spawn:
		stack := a.spawnStack(e)
		if len(stack) > 0 && strings.HasPrefix(stack[0].Function, "runtime.") {
			// The runtime's own goroutines (GC mark workers started
			// while a traced goroutine allocates) carry no user trace.
			a.runtimeSpawns++
			return Break{}, false
		}
		site, _ := a.userFrame(stack)
		i := a.site(site)
		a.spawnSites[i].TracedSpawns++
		a.remember(e.Goroutine, pending{site: i, stack: stack, parent: e.Parent, time: e.Time})
	case event.FirstCheck:
		p, ok := a.pending[e.Goroutine]
		if !ok {
			a.unmatched++
			return Break{}, false
		}
		delete(a.pending, e.Goroutine)
		s := &a.spawnSites[p.site]
		switch e.Outcome {
		case event.Propagated:
			s.Propagated++
		case event.Lost:
			s.Lost++
			return a.report(LostAtSpawn, e, &p), true
		case event.NewRoot:
			s.NewRoot++
			return a.report(NewRoot, e, &p), true
		}
	case event.Dropped:
		return a.report(Dropped, e, nil), true
	case event.Overwritten:
		return a.report(Overwritten, e, nil), true
	}
	return Break{}, false
}

// spawnStack drops the runtime's own frames around a go statement: those
// of goroutine creation before it (how many depends on the Go version) and
// goexit after it, so the stack starts at the go statement.
func spawnStack(frames []Frame) []Frame {
	i := 0
	for i < len(frames)-1 && (frames[i].Function == "runtime.newproc" || frames[i].Function == "runtime.systemstack" ||
		frames[i].Function == "runtime.newproc.func1") {
		i++
	}
	frames = frames[i:]
	if n := len(frames); n > 1 && frames[n-1].Function == "runtime.goexit" {
		frames = frames[:n-1]
	}
	return frames
}

func (a *Analyzer) remember(goid uint64, p pending) {
	a.pending[goid] = p
	a.order = append(a.order, goid)
	for len(a.pending) > a.opts.MaxPending && len(a.order) > 0 {
		delete(a.pending, a.order[0])
		a.order = a.order[1:]
	}
	// Compact when mostly stale, so order stays proportional to pending.
	if len(a.order) > 2*a.opts.MaxPending || (len(a.order) > 1024 && len(a.order) > 4*len(a.pending)) {
		live := a.order[:0]
		for _, g := range a.order {
			if _, ok := a.pending[g]; ok {
				live = append(live, g)
			}
		}
		a.order = live
	}
}

func (a *Analyzer) report(kind Kind, e *event.Event, p *pending) Break {
	b := Break{
		Kind:      kind,
		PID:       a.pid,
		Trace:     e.Trace,
		Other:     e.Other,
		Goroutine: e.Goroutine,
		Time:      e.Time,
	}
	b.Site, _ = a.userFrame(a.stack(e.Frames()))
	key := breakKey{kind: kind, site: b.Site}
	if p != nil {
		b.Spawn = p.stack
		b.ParentGoroutine = p.parent
		b.SpawnTime = p.time
		key.spawnSite = a.spawnSites[p.site].Site
	}
	c, ok := a.breaks[key]
	if !ok {
		c = &BreakCount{Kind: kind, Site: b.Site, Spawn: b.Spawn, TraceID: e.Trace.Label()}
		a.breaks[key] = c
		a.breakOrder = append(a.breakOrder, key)
	}
	c.Count++
	b.First = !ok
	b.Count = c.Count
	return b
}

// Snapshot returns the analysis so far: spawn sites with judged goroutines
// sorted by breaks, most first, and breaks in order of first occurrence.
func (a *Analyzer) Snapshot() Snapshot {
	s := Snapshot{PID: a.pid, Events: a.events, Unmatched: a.unmatched}
	s.SpawnSites = slices.Clone(a.spawnSites)
	slices.SortStableFunc(s.SpawnSites, func(x, y SpawnSite) int {
		return cmp.Compare(y.Lost+y.NewRoot, x.Lost+x.NewRoot)
	})
	for _, k := range a.breakOrder {
		s.Breaks = append(s.Breaks, *a.breaks[k])
	}
	return s
}
