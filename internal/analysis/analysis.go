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
	// StaleParent: a span started on a context whose span the same
	// goroutine started and had ended (a loop's `ctx, span =
	// tracer.Start(ctx, ...)`). Trace is the ended parent, Other the new
	// span, both of the same trace.
	StaleParent Kind = "stale-parent"
	// LogWithoutTrace: a goroutine with a trace in scope wrote a log
	// record with a context that carries no trace.
	LogWithoutTrace Kind = "log-without-trace"
	// LostAtHandoff: a goroutine that received, in user code, a channel
	// element sent from user code inside a trace acted next with no trace,
	// or started another (Other: the new trace). Reported at the
	// receiver's line, with the send's stack (Break.Handoff).
	LostAtHandoff Kind = "lost-at-handoff"
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
	// first check (the oldest are forgotten first). Zero means
	// DefaultMaxPending. The probes keep a goroutine's state in a map of
	// bounded size, and a goroutine whose state they dropped never makes
	// a first check: remembering more of them than that map holds only
	// costs memory.
	MaxPending int
	// LogFuncs are the user's logging helpers (--log-func): a record
	// written inside one (its code on the stack, not inlined) was counted
	// at its call, and one inlined into its caller is reported at the
	// caller's line.
	LogFuncs []string
}

// DefaultMaxPending is the default of Options.MaxPending.
const DefaultMaxPending = 1 << 17

// Break is one occurrence of a break.
type Break struct {
	Kind            Kind
	PID             uint32
	Trace           event.Trace // the trace that broke
	Other           event.Trace // new-root: the new trace; overwritten: the overwriting value; stale-parent: the new span
	Goroutine       uint64
	ParentGoroutine uint64
	Site            Frame   // where it was seen: the innermost user frame of the check
	Stack           []Frame // the user frames of the check, innermost first, inlined ones expanded
	Spawn           []Frame // the spawn stack, go statement first; nil for dropped, overwritten, stale-parent, a hand-off and a record of a goroutine judged before
	Handoff         []Frame // lost-at-handoff (and a handed-off goroutine's log-without-trace): the send's stack, the send line first
	SpawnTime, Time uint64  // CLOCK_MONOTONIC ns; SpawnTime 0 when not spawned in a trace
	// First is set on the first occurrence of this kind, site and spawn site.
	First bool
	// Count is the number of occurrences so far, this one included.
	Count uint64
}

// After is how long after its spawn the goroutine did the act judged: a
// fire-and-forget task acts within moments, a worker started long ago
// much later.
func (b *Break) After() uint64 {
	if b.SpawnTime == 0 || b.Time < b.SpawnTime {
		return 0
	}
	return b.Time - b.SpawnTime
}

// SpawnSite counts what became of the goroutines started at one line.
type SpawnSite struct {
	Site         Frame  `json:"site"`
	TracedSpawns uint64 `json:"traced_spawns"`
	Propagated   uint64 `json:"propagated"`
	Lost         uint64 `json:"lost"`
	NewRoot      uint64 `json:"new_root"`
	// NeverJudged counts the traced spawns whose goroutine got no verdict:
	// it never used a context from user code, its first act carried
	// another trace (a worker taking another request's job), its state
	// was lost, or it has not acted yet.
	NeverJudged uint64 `json:"never_judged"`
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

// HandoffSite counts what became of the channel elements sent inside a
// trace at one line (the send's innermost user frame): handed to a
// receiving goroutine, and judged at its next trace-bearing act.
type HandoffSite struct {
	Site       Frame  `json:"site"`
	Handed     uint64 `json:"handed"`
	Propagated uint64 `json:"propagated"`
	Lost       uint64 `json:"lost"`
	NewRoot    uint64 `json:"new_root"`
	// NeverJudged counts the hand-offs whose receiver got no verdict: it
	// acted next with another trace (a job of another request), received
	// another element first, did nothing trace-bearing, or its state was
	// lost.
	NeverJudged uint64 `json:"never_judged"`
}

// Retention is propagated / (propagated + lost + new roots), or -1 when no
// receiver of the site has been judged yet.
func (s *HandoffSite) Retention() float64 {
	n := s.Propagated + s.Lost + s.NewRoot
	if n == 0 {
		return -1
	}
	return float64(s.Propagated) / float64(n)
}

// LogSite counts the log records written at one line (the innermost user
// frame outside --log-func helpers) by goroutines with a trace in scope.
type LogSite struct {
	Site Frame `json:"site"`
	// InsideTrace counts the records written with a trace in scope: those
	// with the trace, those without (log-without-trace), and those whose
	// context carries another trace or cannot be walked.
	InsideTrace uint64 `json:"inside_trace"`
	WithTrace   uint64 `json:"with_trace"`
	// WithoutTrace is the number of log-without-trace breaks at the site.
	WithoutTrace uint64 `json:"without_trace"`
}

// StartSite counts the spans started at one Start line (the innermost
// user frame of the call that reached the SDK's (*tracer).Start) on a
// parent span that the same goroutine had started: the only spans
// stale-parent judges. The probes count them in the kernel, with no event
// for those whose parent was open.
type StartSite struct {
	Site Frame `json:"site"`
	// Started counts the spans started on a parent of the goroutine's own:
	// Kept had an open parent, Stale an ended one (stale-parent).
	Started uint64 `json:"started"`
	Kept    uint64 `json:"kept"`
	Stale   uint64 `json:"stale"`
}

// Retention is kept / started, or -1 when none was started.
func (s *StartSite) Retention() float64 {
	if s.Started == 0 {
		return -1
	}
	return float64(s.Kept) / float64(s.Started)
}

// StartCount is what the probes counted at one Start site of the process:
// PC is the return address into the function that called the SDK's
// (*tracer).Start.
type StartCount struct {
	PC, Started, Stale uint64
}

// BreakCount is one distinct break with its number of occurrences.
type BreakCount struct {
	Kind    Kind    `json:"kind"`
	Site    Frame   `json:"site"`
	Stack   []Frame `json:"stack,omitempty"`
	Spawn   []Frame `json:"spawn,omitempty"`
	Handoff []Frame `json:"handoff,omitempty"`
	Count   uint64  `json:"count"`
	TraceID string  `json:"trace_id"` // of the first occurrence
}

// Snapshot is the analysis so far.
type Snapshot struct {
	PID       uint32
	Events    uint64
	Unmatched uint64 // first checks whose spawn was not seen (forgotten or lost)
	// Forgotten counts the goroutines spawned in a trace that were dropped
	// before their first check, because MaxPending newer ones were waiting
	// for theirs. Most never check at all; one that does later is counted
	// in Unmatched.
	Forgotten uint64
	// NeverJudged is the sum of the spawn sites' NeverJudged.
	NeverJudged uint64
	SpawnSites  []SpawnSite
	// HandoffSites are the lines that sent channel elements inside a
	// trace, most breaks first. Their never-judged hand-offs are not in
	// NeverJudged.
	HandoffSites []HandoffSite
	// LogSites are the lines that wrote log records inside a trace, most
	// without the trace first.
	LogSites []LogSite
	// StartSites are the Start lines that started spans on a parent span
	// of their own goroutine, most stale first (SetStartCounts).
	StartSites []StartSite
	Breaks     []BreakCount
}

type breakKey struct {
	kind      Kind
	site      Frame
	spawnSite Frame // or the send site
	handoff   bool
}

// pending is a goroutine spawned in a trace whose first check is awaited.
// The pending map may hold MaxPending of them, so it is kept small (its
// spawn time comes back with the first check) and holds no pointer, so
// that the garbage collector need not scan the map.
type pending struct {
	parent uint64
	spawn  uint32 // index into Analyzer.spawns, or overflowSpawn
	// index into Analyzer.spawnSites, or lazySite; with handoffSite set,
	// of Analyzer.handoffSites: the goroutine was handed a channel
	// element, and spawn is the send's stack.
	site uint32
}

// handoffSite marks pending.site as a send site.
const handoffSite = 1 << 31

// handoff says whether p was handed a channel element rather than spawned.
func (p *pending) handoff() bool { return p.site != lazySite && p.site&handoffSite != 0 }

// sendSite is the index into Analyzer.handoffSites of a handed-off p.
func (p *pending) sendSite() uint32 { return p.site &^ handoffSite }

// overflowSpawn marks a pending goroutine whose spawn stack is kept in
// Analyzer.overflow: maxStacks distinct spawn stacks were interned already.
const overflowSpawn = ^uint32(0)

// spawnInfo is what a distinct spawn stack resolves to, once.
type spawnInfo struct {
	stack   []Frame // go statement first
	site    uint32  // index into spawnSites
	runtime bool    // started by the runtime itself: not traced
	lazy    bool    // started under sync.Once: a lazy singleton, not traced
}

// lazySite marks a pending goroutine started under sync.Once: its first
// check is taken and nothing is judged (DESIGN.md: a lazy singleton lives
// for the process, and inherits nothing from the request that started it).
const lazySite = ^uint32(0)

// maxLazy bounds the lazy singletons remembered after their first act, so
// that their later log records are not judged against the request that
// happened to start them: a program has few (each is started once).
const maxLazy = 1 << 12

// traceless is an inheriting goroutine's incidental check that carried no
// trace (event.Traceless), held until its trace-bearing work decides; a
// goroutine that ends without any is lost there.
type traceless struct {
	e event.Event
}

// Analyzer holds the analysis of one process. Not safe for concurrent use.
//
// Its memory is bounded whatever the process does: per goroutine it keeps
// only the pending ones, at most MaxPending; everything else is per
// distinct return address, stack, site or break of the program.
type Analyzer struct {
	pid          uint32
	opts         Options
	frames       map[uint64][]Frame // resolved return addresses
	siteIndex    map[Frame]int
	spawnSites   []SpawnSite
	handoffIndex map[Frame]int
	handoffSites []HandoffSite
	pending      map[uint64]pending
	spawnIndex   map[stackKey]uint32 // distinct spawn stacks, interned
	spawns       []spawnInfo
	overflow     map[uint64][]Frame // spawn stacks of pending goroutines not interned
	order        []uint64           // goroutines in pending, oldest first (may hold stale ids)
	breaks       map[breakKey]*BreakCount
	breakOrder   []breakKey
	traceless    map[uint64]*traceless // pending goroutines with a traceless incidental check
	logIndex     map[Frame]int
	logSites     []LogSite
	logFuncs     map[string]bool
	startCounts  []StartCount    // the probes' counters, as last read
	lazy         map[uint64]bool // lazy singletons past their first act (at most maxLazy)
	events       uint64
	unmatched    uint64
	forgotten    uint64
}

// New returns an Analyzer for process pid.
func New(pid uint32, opts Options) *Analyzer {
	if opts.MaxPending <= 0 {
		opts.MaxPending = DefaultMaxPending
	}
	logFuncs := map[string]bool{}
	for _, f := range opts.LogFuncs {
		logFuncs[f] = true
	}
	return &Analyzer{
		pid:          pid,
		opts:         opts,
		frames:       map[uint64][]Frame{},
		siteIndex:    map[Frame]int{},
		handoffIndex: map[Frame]int{},
		pending:      map[uint64]pending{},
		spawnIndex:   map[stackKey]uint32{},
		overflow:     map[uint64][]Frame{},
		breaks:       map[breakKey]*BreakCount{},
		traceless:    map[uint64]*traceless{},
		logIndex:     map[Frame]int{},
		logFuncs:     logFuncs,
		lazy:         map[uint64]bool{},
	}
}

// stackKey is a captured stack, as a map key.
type stackKey struct {
	n   int
	pcs [event.StackDepth]uint64
}

// maxStacks bounds the distinct spawn stacks kept resolved. A program
// has few (one per go statement and way of reaching it); past the bound,
// a stack is resolved for each spawn and kept while its goroutine is
// pending.
const maxStacks = 1 << 14

// spawnOf returns what the spawn stack of e resolves to, resolved and
// trimmed once per distinct stack: goroutines started at the same place
// share it (read-only), and a spawn allocates nothing once its stack has
// been seen. The index is overflowSpawn for a stack not interned. For a
// hand-off's send stack, the site is a send site (handoffSites): a send's
// return address is never a go statement's.
func (a *Analyzer) spawnOf(e *event.Event) (uint32, spawnInfo) {
	k := stackKey{n: e.NStack, pcs: e.Stack}
	for i := e.NStack; i < len(k.pcs); i++ {
		k.pcs[i] = 0
	}
	if i, ok := a.spawnIndex[k]; ok {
		return i, a.spawns[i]
	}
	stack := spawnStack(a.stack(e.Frames()))
	info := spawnInfo{stack: stack}
	if e.Kind == event.Handoff {
		site, _ := a.userFrame(stack)
		info.site = uint32(a.handoffSite(site))
	} else if len(stack) > 0 && strings.HasPrefix(stack[0].Function, "runtime.") {
		// The runtime's own goroutines (GC mark workers started
		// while a traced goroutine allocates) carry no user trace.
		info.runtime = true
	} else if underOnce(stack) {
		info.lazy = true
	} else {
		site, _ := a.userFrame(stack)
		info.site = uint32(a.site(site))
	}
	if len(a.spawns) >= maxStacks {
		return overflowSpawn, info
	}
	i := uint32(len(a.spawns))
	a.spawns = append(a.spawns, info)
	a.spawnIndex[k] = i
	return i, info
}

// underOnce reports whether a spawn stack runs under sync.Once (Do, or
// OnceFunc and OnceValue, which call it).
func underOnce(stack []Frame) bool {
	for _, f := range stack {
		if f.Function == "sync.(*Once).doSlow" || f.Function == "sync.(*Once).Do" {
			return true
		}
	}
	return false
}

// stack resolves return addresses into logical frames, innermost first.
func (a *Analyzer) stack(pcs []uint64) []Frame {
	var out []Frame
	for _, pc := range pcs {
		out = append(out, a.resolve(pc)...)
	}
	return out
}

// resolve returns the logical frames of one return address, inlined ones
// first, the function whose code it is in last.
func (a *Analyzer) resolve(pc uint64) []Frame {
	fs, ok := a.frames[pc]
	if !ok {
		fs = a.opts.Resolver.FramesForReturn(pc)
		a.frames[pc] = fs
	}
	return fs
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
		i, info := a.spawnOf(e)
		if info.runtime {
			return Break{}, false
		}
		if info.lazy {
			a.remember(e.Goroutine, pending{parent: e.Parent, spawn: i, site: lazySite}, info.stack)
			return Break{}, false
		}
		a.spawnSites[info.site].TracedSpawns++
		a.remember(e.Goroutine, pending{parent: e.Parent, spawn: i, site: info.site}, info.stack)
	case event.Handoff:
		i, info := a.spawnOf(e)
		h := int(info.site)
		a.handoffSites[h].Handed++
		// A hand-off is the request's work, even to a goroutine started
		// under sync.Once (a lazily started worker fed by a channel).
		delete(a.lazy, e.Goroutine)
		a.remember(e.Goroutine, pending{parent: e.Parent, spawn: i, site: uint32(h) | handoffSite}, info.stack)
	case event.FirstCheck:
		p, ok := a.pending[e.Goroutine]
		if !ok {
			a.unmatched++
			return Break{}, false
		}
		if e.Outcome == event.Traceless {
			// An incidental check: its work decides (see traceless).
			if _, held := a.traceless[e.Goroutine]; !held && p.site != lazySite {
				a.traceless[e.Goroutine] = &traceless{e: *e}
			}
			return Break{}, false
		}
		stack := a.spawnStackOf(e.Goroutine, p)
		a.forget(e.Goroutine, p)
		if p.site == lazySite && !p.handoff() {
			a.lazyDone(e.Goroutine)
			return Break{}, false
		}
		if p.handoff() {
			return a.handedFirst(e, &p, stack)
		}
		s := &a.spawnSites[p.site]
		switch e.Outcome {
		case event.Propagated:
			s.Propagated++
		case event.Lost:
			s.Lost++
			return a.report(LostAtSpawn, e, &p, stack), true
		case event.NewRoot:
			s.NewRoot++
			return a.report(NewRoot, e, &p, stack), true
		case event.Other:
			// Its first act carried another trace (a worker started
			// lazily, taking another request's job): not judged against
			// this one, counted as never judged.
		}
	case event.Dropped:
		return a.report(Dropped, e, nil, nil), true
	case event.Overwritten:
		return a.report(Overwritten, e, nil, nil), true
	case event.StaleParent:
		return a.report(StaleParent, e, nil, nil), true
	case event.Log:
		return a.logRecord(e)
	}
	return Break{}, false
}

// handedFirst judges the next trace-bearing act of a goroutine handed a
// channel element inside a trace, as a spawned child's first act is:
// propagated, lost-at-handoff (no trace, or a new root), or, carrying
// another trace, not judged.
func (a *Analyzer) handedFirst(e *event.Event, p *pending, stack []Frame) (Break, bool) {
	s := &a.handoffSites[p.sendSite()]
	switch e.Outcome {
	case event.Propagated:
		s.Propagated++
	case event.Lost:
		s.Lost++
		return a.report(LostAtHandoff, e, p, stack), true
	case event.NewRoot:
		s.NewRoot++
		return a.report(LostAtHandoff, e, p, stack), true
	}
	return Break{}, false
}

func (a *Analyzer) handoffSite(f Frame) int {
	i, ok := a.handoffIndex[f]
	if !ok {
		i = len(a.handoffSites)
		a.handoffIndex[f] = i
		a.handoffSites = append(a.handoffSites, HandoffSite{Site: f})
	}
	return i
}

// logRecord counts a log record written by a goroutine with a trace in
// scope at its line, and reports it when its context carries no trace. A
// record is trace-bearing work: for a goroutine that inherited the trace
// and awaits its verdict, a record with the trace is propagated, one
// without is lost (reported as log-without-trace, with its spawn stack),
// one with another trace is not judged, and one whose context cannot be
// walked leaves it waiting.
func (a *Analyzer) logRecord(e *event.Event) (Break, bool) {
	if a.inLogFunc(e.Frames()) || a.lazy[e.Goroutine] {
		return Break{}, false // counted at the helper's call; a lazy singleton inherited nothing
	}
	unknown := e.Outcome == event.Other && !e.Other.Valid()
	p, pending := a.pending[e.Goroutine]
	judged := pending && !unknown
	var stack []Frame
	if judged {
		stack = a.spawnStackOf(e.Goroutine, p)
		a.forget(e.Goroutine, p)
		if p.site == lazySite && !p.handoff() {
			a.lazyDone(e.Goroutine)
			return Break{}, false // a lazy singleton inherited nothing
		}
	}
	site := &a.logSites[a.logSite(a.logFrame(a.stack(e.Frames())))]
	site.InsideTrace++
	var propagated, lost *uint64
	if judged && p.handoff() {
		propagated, lost = &a.handoffSites[p.sendSite()].Propagated, &a.handoffSites[p.sendSite()].Lost
	} else if judged {
		propagated, lost = &a.spawnSites[p.site].Propagated, &a.spawnSites[p.site].Lost
	}
	switch e.Outcome {
	case event.Propagated:
		site.WithTrace++
		if propagated != nil {
			*propagated++
		}
	case event.Lost:
		site.WithoutTrace++
		if lost != nil {
			*lost++
			return a.report(LogWithoutTrace, e, &p, stack), true
		}
		return a.report(LogWithoutTrace, e, nil, nil), true
	}
	return Break{}, false
}

// lazyDone remembers that lazy singleton goid made its first act: the
// probes still hold the state it was spawned with, and send its log records
// while that is in scope.
func (a *Analyzer) lazyDone(goid uint64) {
	if len(a.lazy) < maxLazy {
		a.lazy[goid] = true
	}
}

// inLogFunc reports whether a --log-func helper's own code is on a stack
// (not inlined: its call was probed).
func (a *Analyzer) inLogFunc(pcs []uint64) bool {
	if len(a.logFuncs) == 0 {
		return false
	}
	for _, pc := range pcs {
		if fs := a.resolve(pc); len(fs) > 0 && a.logFuncs[fs[len(fs)-1].Function] {
			return true
		}
	}
	return false
}

// logFrame is the line a log record is reported at: the innermost user
// frame outside --log-func helpers.
func (a *Analyzer) logFrame(frames []Frame) Frame {
	for _, f := range frames {
		if a.opts.IsUser(f.Function) && !a.logFuncs[f.Function] {
			return f
		}
	}
	f, _ := a.userFrame(frames)
	return f
}

func (a *Analyzer) logSite(f Frame) int {
	i, ok := a.logIndex[f]
	if !ok {
		i = len(a.logSites)
		a.logIndex[f] = i
		a.logSites = append(a.logSites, LogSite{Site: f})
	}
	return i
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

// remember makes goroutine goid pending, forgetting the oldest pending
// goroutines beyond MaxPending. stack is its spawn stack, kept aside if
// its spawn is not interned.
func (a *Analyzer) remember(goid uint64, p pending, stack []Frame) {
	if old, ok := a.pending[goid]; ok {
		a.forget(goid, old) // a goid is never reused: a repeated spawn record
	}
	a.pending[goid] = p
	if p.spawn == overflowSpawn {
		a.overflow[goid] = stack
	}
	a.order = append(a.order, goid)
	for len(a.pending) > a.opts.MaxPending && len(a.order) > 0 {
		if old, ok := a.pending[a.order[0]]; ok {
			a.forget(a.order[0], old)
			a.forgotten++
		}
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

// forget drops pending goroutine goid.
func (a *Analyzer) forget(goid uint64, p pending) {
	delete(a.pending, goid)
	delete(a.traceless, goid)
	if p.spawn == overflowSpawn {
		delete(a.overflow, goid)
	}
}

// spawnStackOf returns the spawn stack of pending goroutine goid.
func (a *Analyzer) spawnStackOf(goid uint64, p pending) []Frame {
	if p.spawn == overflowSpawn {
		return a.overflow[goid]
	}
	return a.spawns[p.spawn].stack
}

func (a *Analyzer) report(kind Kind, e *event.Event, p *pending, spawn []Frame) Break {
	b := Break{
		Kind:      kind,
		PID:       a.pid,
		Trace:     e.Trace,
		Other:     e.Other,
		Goroutine: e.Goroutine,
		Time:      e.Time,
	}
	frames := a.stack(e.Frames())
	b.Site, _ = a.userFrame(frames)
	if kind == LogWithoutTrace {
		b.Site = a.logFrame(frames)
	}
	for _, f := range frames {
		if a.opts.IsUser(f.Function) {
			b.Stack = append(b.Stack, f)
		}
	}
	key := breakKey{kind: kind, site: b.Site}
	if p != nil && p.handoff() {
		b.Handoff = spawn
		b.ParentGoroutine = p.parent
		b.SpawnTime = e.SpawnTime
		key.spawnSite = a.handoffSites[p.sendSite()].Site
		key.handoff = true
	} else if p != nil {
		b.Spawn = spawn
		b.ParentGoroutine = p.parent
		b.SpawnTime = e.SpawnTime
		key.spawnSite = a.spawnSites[p.site].Site
	}
	c, ok := a.breaks[key]
	if !ok {
		c = &BreakCount{Kind: kind, Site: b.Site, Stack: b.Stack, Spawn: b.Spawn, Handoff: b.Handoff, TraceID: e.Trace.Label()}
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
	s := Snapshot{PID: a.pid, Events: a.events, Unmatched: a.unmatched, Forgotten: a.forgotten}
	s.SpawnSites = slices.Clone(a.spawnSites)
	for i := range s.SpawnSites {
		site := &s.SpawnSites[i]
		site.NeverJudged = site.TracedSpawns - min(site.TracedSpawns, site.Propagated+site.Lost+site.NewRoot)
		s.NeverJudged += site.NeverJudged
	}
	slices.SortStableFunc(s.SpawnSites, func(x, y SpawnSite) int {
		return cmp.Compare(y.Lost+y.NewRoot, x.Lost+x.NewRoot)
	})
	s.HandoffSites = slices.Clone(a.handoffSites)
	for i := range s.HandoffSites {
		site := &s.HandoffSites[i]
		site.NeverJudged = site.Handed - min(site.Handed, site.Propagated+site.Lost+site.NewRoot)
	}
	slices.SortStableFunc(s.HandoffSites, func(x, y HandoffSite) int {
		return cmp.Compare(y.Lost+y.NewRoot, x.Lost+x.NewRoot)
	})
	s.LogSites = slices.Clone(a.logSites)
	slices.SortStableFunc(s.LogSites, func(x, y LogSite) int { return cmp.Compare(y.WithoutTrace, x.WithoutTrace) })
	s.StartSites = a.startSites()
	for _, k := range a.breakOrder {
		s.Breaks = append(s.Breaks, *a.breaks[k])
	}
	return s
}

// SetStartCounts takes the probes' counters of the process's Start sites
// (read from the kernel, not sent as events), for the next Snapshot. They
// are totals: each call replaces the last.
func (a *Analyzer) SetStartCounts(counts []StartCount) {
	a.startCounts = append(a.startCounts[:0], counts...)
}

// startSites resolves the counted Start sites to lines, as a stale-parent
// break's site is found: the innermost user frame at the return address
// (into Start's caller, or the first one of user code the probes found
// above it). A return address with no user frame (more library frames
// between the user's line and Start than the probes climb) is left out:
// that site's stale-parent breaks are still reported, at a user frame
// further up.
func (a *Analyzer) startSites() []StartSite {
	var sites []StartSite
	index := map[Frame]int{}
	for _, c := range a.startCounts {
		f, ok := a.userFrame(a.resolve(c.PC))
		if !ok {
			continue
		}
		i, seen := index[f]
		if !seen {
			i = len(sites)
			index[f] = i
			sites = append(sites, StartSite{Site: f})
		}
		stale := min(c.Stale, c.Started)
		sites[i].Started += c.Started
		sites[i].Stale += stale
		sites[i].Kept += c.Started - stale
	}
	slices.SortStableFunc(sites, func(x, y StartSite) int {
		if c := cmp.Compare(y.Stale, x.Stale); c != 0 {
			return c
		}
		return cmp.Compare(y.Started, x.Started)
	})
	return sites
}

// Finish judges what only the end of the watch decides: a goroutine that
// inherited a trace, made an incidental check without it and then did no
// trace-bearing work is lost at that check (DESIGN.md, "judge the work").
// The probes see no goroutine exit, so this is decided when the process
// (or the watch) ends; a goroutine still blocked then is taken as ended.
// It returns the breaks, in the order of their checks.
func (a *Analyzer) Finish() []Break {
	goids := make([]uint64, 0, len(a.traceless))
	for g := range a.traceless {
		goids = append(goids, g)
	}
	slices.SortFunc(goids, func(x, y uint64) int { return cmp.Compare(a.traceless[x].e.Time, a.traceless[y].e.Time) })
	var out []Break
	for _, g := range goids {
		t := a.traceless[g]
		p, ok := a.pending[g]
		if !ok {
			continue
		}
		stack := a.spawnStackOf(g, p)
		a.forget(g, p)
		if p.handoff() {
			a.handoffSites[p.sendSite()].Lost++
			out = append(out, a.report(LostAtHandoff, &t.e, &p, stack))
			continue
		}
		a.spawnSites[p.site].Lost++
		out = append(out, a.report(LostAtSpawn, &t.e, &p, stack))
	}
	return out
}
