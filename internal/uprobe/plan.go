package uprobe

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/ctxwatch/ctxwatch/internal/layout"
	"github.com/ctxwatch/ctxwatch/internal/target"
)

// TraceKey is a user trace key as given on the command line.
type TraceKey struct {
	Kind KeyKind // KeyType or KeyString; NewPlan refines KeyType by the type's kind
	Name string  // KeyType: the type's name (main.traceKey); KeyString: the key text
	// Value, with KeyType, is the key's value (",value=trace_id"): a named
	// string or integer type keys other values under other constants.
	Value    string
	HasValue bool
}

// ParseTraceKey parses --trace-key's "type=IMPORT/PATH.TypeName",
// "type=IMPORT/PATH.TypeName,value=VALUE" or "string=TEXT".
func ParseTraceKey(s string) (TraceKey, error) {
	kind, name, ok := strings.Cut(s, "=")
	if ok && name != "" {
		switch kind {
		case "type":
			k := TraceKey{Kind: KeyType, Name: name}
			if n, v, ok := strings.Cut(name, ",value="); ok {
				if n == "" {
					break
				}
				if len(v) > MaxKeyLen {
					return TraceKey{}, fmt.Errorf("trace key %q: values of at most %d bytes are matched", s, MaxKeyLen)
				}
				k.Name, k.Value, k.HasValue = n, v, true
			}
			return k, nil
		case "string":
			if len(name) > MaxKeyLen {
				return TraceKey{}, fmt.Errorf("trace key %q: string keys of at most %d bytes are matched", s, MaxKeyLen)
			}
			return TraceKey{Kind: KeyString, Name: name}, nil
		}
	}
	return TraceKey{}, fmt.Errorf("trace key %q: want type=IMPORT/PATH.TypeName[,value=VALUE] or string=TEXT", s)
}

func (k TraceKey) String() string {
	switch {
	case k.Kind == KeyString:
		return "string=" + k.Name
	case k.HasValue:
		return "type=" + k.Name + ",value=" + k.Value
	}
	return "type=" + k.Name
}

// ErrKeyNeedsValue means a --trace-key type has more than one value, and
// the type alone would match the keys of other values too (a user id kept
// under a sibling constant), whose values must never be read.
var ErrKeyNeedsValue = errors.New("the type has more than one value: name the trace key's value")

// Kinds of internal/abi.Kind that a key type with a value may have.
const (
	abiKindInt     = 2  // int, then int8..int64 (3-6), uint..uintptr (7-12)
	abiKindUintptr = 12 // the last integer kind
	abiKindString  = 24
)

// resolveKey finds a --trace-key type in bin and says how the probes match
// it: by type alone only for a type of size zero (struct{}), else by type
// and value.
func resolveKey(bin *target.Binary, k TraceKey) (Key, error) {
	addr, err := bin.TypeAddr(k.Name)
	if err != nil {
		return Key{}, fmt.Errorf("trace key %s: %w", k, err)
	}
	kind, size, err := bin.TypeKind(addr)
	if err != nil {
		return Key{}, fmt.Errorf("trace key %s: %w", k, err)
	}
	if !k.HasValue {
		if size != 0 {
			return Key{}, fmt.Errorf("trace key %s: %w (type=%s,value=VALUE)", k, ErrKeyNeedsValue, k.Name)
		}
		return Key{Kind: KeyType, Type: addr}, nil
	}
	switch {
	case kind == abiKindString:
		return Key{Kind: KeyTypeString, Type: addr, Text: k.Value}, nil
	case kind >= abiKindInt && kind <= abiKindUintptr && size >= 1 && size <= 8:
		v, err := strconv.ParseInt(k.Value, 0, 64)
		if err != nil {
			u, uerr := strconv.ParseUint(k.Value, 0, 64)
			if uerr != nil {
				return Key{}, fmt.Errorf("trace key %s: %s is an integer type: %w", k, k.Name, err)
			}
			v = int64(u)
		}
		mask := ^uint64(0) >> (64 - 8*size)
		return Key{Kind: KeyTypeInt, Type: addr, Int: uint64(v) & mask, IntMask: mask}, nil
	}
	return Key{}, fmt.Errorf("trace key %s: a value can be named for string and integer types, %s is neither", k, k.Name)
}

// Options say what to watch beyond the built-in checks.
type Options struct {
	TraceKeys  []TraceKey
	CheckFuncs []string // full function names whose context argument is a check
	// LogFuncs are full function names (--log-func) whose call writes a
	// log record with their first context argument.
	LogFuncs     []string
	UserPrefixes []string // package path prefixes judged as user code
}

// contextWrapperTypes are the types outside package context, known by
// name, whose value is a struct that embeds context.Context as its first
// field: the probes walk through them to the context they wrap.
// signal.NotifyContext's signalCtx is the usual root of a service.
var contextWrapperTypes = []string{"*os/signal.signalCtx"}

// Plan is what to probe in one binary, at link-time addresses.
type Plan struct {
	Layout          Layout
	Keys            []Key
	ContextWrappers []uint64 // link-time addresses of type descriptors (see Config)
	UserText        []Range
	Points          []Point
	// Notes says what is not watched and why, for --verbose.
	Notes []string
	// Warnings says what a user would miss: always shown.
	Warnings []string

	bin         *target.Binary // what ForProcess checks Points against
	selectSites <-chan selectSites
}

// Entry points that show which context a goroutine uses: the first
// argument is the parent context.
var contextArg0Funcs = []string{
	"context.WithCancel",
	"context.WithCancelCause",
	"context.WithDeadline",
	"context.WithDeadlineCause",
	"context.WithTimeout",
	"context.WithTimeoutCause",
	"context.WithoutCancel",
	"context.AfterFunc",
}

// wrappers lists the functions that only pass their context on to
// another: when the callee is probed, the wrapper is not, so that each call
// is one check. (WithDeadlineCause also calls WithCancel, but only on one
// path: it is no wrapper.)
var wrappers = map[string][]string{
	"context.WithTimeout":      {"context.WithDeadline", "context.WithDeadlineCause"},
	"context.WithDeadline":     {"context.WithDeadlineCause"},
	"context.WithTimeoutCause": {"context.WithDeadlineCause"},
	"context.WithCancelCause":  {"context.WithCancel"},
}

const (
	otelTrace = "go.opentelemetry.io/otel/trace"
	otelSDK   = "go.opentelemetry.io/otel/sdk/trace"
)

// ErrUnsupported means the binary lacks what ctxwatch needs to watch it.
var ErrUnsupported = errors.New("cannot watch this binary")

// NewPlan inspects bin and decides where to attach.
func NewPlan(bin *target.Binary, opts Options) (*Plan, error) {
	p := &Plan{bin: bin}
	// What takes longest besides the layout, on another CPU meanwhile:
	// the user code's text ranges (every function's name is read), its
	// selects (its machine code is decoded) and the itabs. Binary is safe for
	// concurrent use, not for use after Close: NewPlan returns, error or
	// not, only once both are done (a caller closes bin on an error, and
	// they read its mapped file).
	var wg sync.WaitGroup
	defer wg.Wait()
	isUser := func(name string) bool { return target.IsUserFunc(name, bin.MainModule, opts.UserPrefixes) }
	userText := make(chan []target.Range, 1)
	selects := make(chan selectSites, 1)
	wg.Add(3)
	go func() { defer wg.Done(); userText <- bin.TextRanges(isUser) }()
	go func() { defer wg.Done(); selects <- findSelects(bin, isUser) }()
	// The static itabs of context.Context, which the layout reads: the
	// Binary reads them once, and a caller meanwhile waits for that.
	go func() { defer wg.Done(); bin.ContextItabs() }()
	p.selectSites = selects
	if err := p.layout(bin); err != nil {
		return nil, err
	}
	if _, err := checkAssumptions(bin, runtimeAssumptions); err != nil {
		return nil, err
	}
	for _, k := range opts.TraceKeys {
		switch k.Kind {
		case KeyType:
			key, err := resolveKey(bin, k)
			if err != nil {
				return nil, err
			}
			p.Keys = append(p.Keys, key)
		case KeyString:
			p.Keys = append(p.Keys, Key{Kind: KeyString, Text: k.Name})
		}
	}
	if len(p.Keys) > MaxKeys {
		return nil, fmt.Errorf("%d trace keys, at most %d: %w", len(p.Keys), MaxKeys, ErrTooManyKeys)
	}
	for _, r := range <-userText {
		p.UserText = append(p.UserText, Range{Start: r.Start, End: r.End})
	}
	if len(p.UserText) > MaxRanges {
		return nil, fmt.Errorf("user code in %d ranges, at most %d: %w", len(p.UserText), MaxRanges, ErrTooManyRanges)
	}

	if err := p.spawn(bin); err != nil {
		return nil, err
	}

	if err := p.entry(bin, "context.WithValue", WithValue, 0); err != nil {
		p.Notes = append(p.Notes, err.Error())
	}
	// Work registered with AfterFunc runs on a goroutine the runtime
	// starts; followed when g.sched.ctxt is known (see bpf/ctxwatch.c).
	followed := p.Layout.GSchedCtxt != 0
	if followed {
		for _, r := range []struct {
			name string
			prog Program
		}{{"time.AfterFunc", TimeAfterFunc}, {"context.AfterFunc", ContextAfterFunc}} {
			if err := p.entry(bin, r.name, r.prog, 0); err != nil {
				p.Notes = append(p.Notes, err.Error())
			}
		}
	} else {
		p.Notes = append(p.Notes, "work registered with time.AfterFunc and context.AfterFunc not followed: offset of runtime.g.sched.ctxt unknown")
	}
	for _, name := range contextArg0Funcs {
		if name == "context.AfterFunc" && followed {
			continue // its own program checks the context too
		}
		fn, err := bin.Func(name)
		if err != nil {
			p.Notes = append(p.Notes, fmt.Sprintf("%s not watched: not a function in this binary (inlined or unused)", name))
			continue
		}
		if callee, err := wrapped(bin, fn); err != nil {
			return nil, err
		} else if callee != "" {
			p.Notes = append(p.Notes, fmt.Sprintf("%s watched through %s, which it calls", name, callee))
			continue
		}
		if err := p.entry(bin, name, ContextArg0, 0); err != nil {
			p.Notes = append(p.Notes, err.Error())
		}
	}
	// A check function missing from one binary may be in the next one
	// (go test -exec runs one binary per package): warn, do not refuse.
	for _, name := range opts.CheckFuncs {
		fn, err := bin.Func(name)
		if err != nil {
			p.Warnings = append(p.Warnings, fmt.Sprintf("--check-func %s not watched: %v", name, bin.MissingFunc(name)))
			continue
		}
		reg, err := bin.ContextArg(fn)
		if err != nil {
			p.Warnings = append(p.Warnings, fmt.Sprintf("--check-func %s not watched: %v", name, err))
			continue
		}
		if err := p.entry(bin, name, CheckFunc, reg); err != nil {
			p.Warnings = append(p.Warnings, fmt.Sprintf("--check-func %s not watched: %v", name, err))
		}
	}
	p.channels(bin)
	p.slog(bin)
	for _, name := range opts.LogFuncs {
		fn, err := bin.Func(name)
		if err != nil {
			p.Warnings = append(p.Warnings, fmt.Sprintf("--log-func %s not watched: %v", name, bin.MissingFunc(name)))
			continue
		}
		reg, err := bin.ContextArg(fn)
		if err != nil {
			p.Warnings = append(p.Warnings, fmt.Sprintf("--log-func %s not watched: %v", name, err))
			continue
		}
		if err := p.entry(bin, name, LogFunc, reg); err != nil {
			p.Warnings = append(p.Warnings, fmt.Sprintf("--log-func %s not watched: %v", name, err))
		}
	}
	return p, nil
}

// sudogElem is the path of the element pointer in runtime.sudog: from Go
// 1.26 elem is a maybeTraceablePtr, whose vu is the source of truth (its
// vp may be cleared for the garbage collector).
func sudogElem(bin *target.Binary) string {
	if _, ok := layout.Runtime(bin.GoVersion, "runtime.sudog", "elem.vu"); ok {
		return "elem.vu"
	}
	if _, ok := layout.Runtime(bin.GoVersion, "runtime.sudog", "elem"); ok {
		return "elem"
	}
	if _, err := bin.FieldOffset("runtime.sudog", "elem.vu"); err == nil {
		return "elem.vu"
	}
	return "elem"
}

// channels places the hand-off probes (lost-at-handoff) on the entries of
// runtime.chansend and runtime.chanrecv, which every plain send and
// receive, range loop and one-case select with default goes through, from
// the runtime's own wrappers (chansend1, chanrecv1, chanrecv2,
// selectnbsend, selectnbrecv), Go 1.17 to 1.27; and for multi-case
// selects (see selects) on runtime.selectgo.
func (p *Plan) channels(bin *target.Binary) {
	if p.Layout.ChanBuf == 0 {
		return
	}
	if fn, err := bin.Func("runtime.chanrecv"); err == nil {
		p.Layout.ChanRecvText, p.Layout.ChanRecvTextEnd = fn.Entry, fn.End
	}
	for _, c := range []struct {
		name string
		prog Program
	}{{"runtime.chansend", ChanSend}, {"runtime.chanrecv", ChanRecv}} {
		if err := p.entry(bin, c.name, c.prog, 0); err != nil {
			p.Notes = append(p.Notes, fmt.Sprintf("channel hand-offs not watched: %v", err))
			p.Points = slices.DeleteFunc(p.Points, func(pt Point) bool { return pt.Program == ChanSend })
			p.Layout.ChanBuf = 0
			return
		}
	}
	p.selects()
}

// MaxSelectSites is how many multi-case selects of user code are
// watched; a select beyond them hands nothing it takes from a buffer or a
// waiting sender.
const MaxSelectSites = 1024

// selects watches the multi-case selects of user code. The compiler calls
// runtime.selectgo(cas0, order0, pc0, nsends, nrecvs, block) (int, bool)
// from the select's own function: a probe on that CALL (emulated by the
// kernel, its arguments loaded) plans the receive of each receive case
// whose channel holds traced elements, and a probe where the function
// then tests selectgo's results (the first jump after the call, emulated;
// else the return address, single-stepped) does the plan of the case
// chosen. Both are found by decoding user code (on arm64 the result probe
// is on the return address, single-stepped). Not on
// selectgo's entry and RETs: every select of the process, the libraries'
// too, would pay the traps, a RET's single-stepped (measured: 17 µs a
// select, against under 1 µs for an emulated probe), and before Go 1.21
// selectgo's entry too (no PUSHQ BP). A receiver parked in a select is
// handed its element by the send (chan_send), which finds the select's
// frames from selectgo's text and passes over a select already won
// (g.selectDone): that needs no probe of the select.
func (p *Plan) selects() {
	found := <-p.selectSites
	fn, sites, err := found.fn, found.sites, found.err
	if fn.Entry == 0 {
		p.Notes = append(p.Notes, fmt.Sprintf("hand-offs through a multi-case select not watched: %v", err))
		return
	}
	if p.Layout.GSelectDone != 0 {
		p.Layout.SelectText, p.Layout.SelectTextEnd = fn.Entry, fn.End
	}
	if err != nil {
		p.Notes = append(p.Notes, fmt.Sprintf("a multi-case select's receive from a buffer or a waiting sender not watched: %v", err))
		return
	}
	if len(sites) > MaxSelectSites {
		p.Notes = append(p.Notes, fmt.Sprintf("%d multi-case selects in user code, the first %d watched for receives from a buffer or a waiting sender", len(sites), MaxSelectSites))
		sites = sites[:MaxSelectSites]
	}
	stepped := 0
	for _, s := range sites {
		p.Points = append(p.Points,
			Point{Program: SelectEnter, Func: s.Func.Name, Address: s.Call, fn: s.Func},
			Point{Program: SelectResult, Func: s.Func.Name, Address: s.Probe, Stepped: !s.Emulated, CountedApart: !s.Emulated, fn: s.Func})
		if !s.Emulated {
			stepped++
		}
	}
	switch {
	case stepped > 0 && p.bin.Arch == "arm64":
		p.Notes = append(p.Notes, fmt.Sprintf("%d multi-case selects in user code probed at the return of runtime.selectgo: single-stepped (arm64)", stepped))
	case stepped > 0:
		p.Notes = append(p.Notes, fmt.Sprintf("%d of %d multi-case selects in user code probed at the return of runtime.selectgo (no jump on its results found): single-stepped, slower", stepped, len(sites)))
	}
}

// selectSites is what findSelects found: runtime.selectgo (Entry 0 when
// err says it was not found) and the selects of user code that call it.
type selectSites struct {
	fn    target.Func
	sites []target.ResultSite
	err   error
}

// findSelects finds runtime.selectgo and its call sites in user code.
func findSelects(bin *target.Binary, isUser func(string) bool) selectSites {
	fn, err := bin.Func("runtime.selectgo")
	if err != nil {
		return selectSites{err: err}
	}
	sites, err := bin.ResultSites(fn, isUser)
	return selectSites{fn: fn, sites: sites, err: err}
}

// slogFuncs are the functions of log/slog that every record of a Logger
// method or package function goes through (Go 1.21 to 1.27), with the
// context the record is written with: (*Logger).log(ctx, level, msg,
// args...) and logAttrs(ctx, level, msg, attrs...). Each returns at once
// when the level is not enabled, else ends with
// l.Handler().Handle(ctx, r), its one call through a register.
var slogFuncs = []string{"log/slog.(*Logger).log", "log/slog.(*Logger).logAttrs"}

// slog places the probes that see log/slog records written: on the call
// of the handler's Handle in each of slogFuncs, reached only when the
// record's level is enabled, where the context is the call's first
// argument. A binary without log/slog, or with a release where the call
// is not found as expected, is watched all the same; --verbose says what
// is not. The kernel single-steps an indirect CALL: a hit costs about what
// a RET's does, paid per record written by a goroutine with a state.
func (p *Plan) slog(bin *target.Binary) {
	for _, name := range slogFuncs {
		fn, err := bin.Func(name)
		if err != nil {
			p.Notes = append(p.Notes, fmt.Sprintf("log records through %s not watched: not a function in this binary (no log/slog, or inlined)", name))
			continue
		}
		calls, err := bin.IndirectCalls(fn)
		if err == nil && len(calls) != 1 {
			err = fmt.Errorf("%d calls through a register, want the one of Handle", len(calls))
		}
		if err != nil {
			p.Notes = append(p.Notes, fmt.Sprintf("log records through %s not watched: %v", name, err))
			continue
		}
		p.Points = append(p.Points, Point{Program: SlogHandle, Func: name, Address: calls[0], Stepped: true, CountedApart: true})
	}
}

// wrapped returns the probed function that wrapper fn calls, if any.
func wrapped(bin *target.Binary, fn target.Func) (string, error) {
	callees := wrappers[fn.Name]
	if len(callees) == 0 {
		return "", nil
	}
	calls, err := bin.CallTargets(fn)
	if err != nil {
		return "", fmt.Errorf("decode %s: %w", fn.Name, err)
	}
	for _, name := range callees {
		callee, err := bin.Func(name)
		if err != nil {
			continue
		}
		if w, err := wrapped(bin, callee); err != nil || w != "" {
			continue // the callee is itself not probed
		}
		for _, c := range calls {
			if c == callee.Entry {
				return name, nil
			}
		}
	}
	return "", nil
}

// spawn places the spawn probe. runtime.newproc's closure (newproc.func1,
// on the system stack) makes the goroutine with newproc1 and queues it with
// runqput(pp, newg, next): on that CALL the new g is the second argument,
// and the kernel emulates a CALL where it single-steps newproc1's RET
// (about 3x cheaper per spawn, measured here). Goroutines made by newproc1
// without runqput (iter.Pull's coroutines, debugger calls) are not seen
// there; the RETs of newproc1 are the fallback when the closure is not
// found as expected.
func (p *Plan) spawn(bin *target.Binary) error {
	newproc1, err := bin.Func("runtime.newproc1")
	if err != nil {
		return fmt.Errorf("find goroutine creation: %w: %w", err, ErrUnsupported)
	}
	if sites := runqputCalls(bin, newproc1); len(sites) > 0 {
		for _, a := range sites {
			p.Points = append(p.Points, Point{Program: Spawn, Func: "runtime.newproc.func1", Address: a})
		}
		p.Layout.SpawnGArg = 1
		return nil
	}
	rets, err := bin.Returns(newproc1)
	if err != nil || len(rets) == 0 {
		return fmt.Errorf("find returns of runtime.newproc1: %v: %w", err, ErrUnsupported)
	}
	for _, r := range rets {
		p.Points = append(p.Points, Point{Program: Spawn, Func: newproc1.Name, Address: r, Stepped: true})
	}
	p.Layout.SpawnGArg = 0
	p.Notes = append(p.Notes, "spawns probed at the returns of runtime.newproc1 (runqput call of runtime.newproc.func1 not found): single-stepped, slower")
	return nil
}

// runqputCalls returns the CALLs of runtime.runqput in runtime.newproc.func1
// that follow its call of newproc1, or none if it does not look like that.
func runqputCalls(bin *target.Binary, newproc1 target.Func) []uint64 {
	closure, err1 := bin.Func("runtime.newproc.func1")
	runqput, err2 := bin.Func("runtime.runqput")
	if err1 != nil || err2 != nil {
		return nil
	}
	calls, err := bin.Calls(closure)
	if err != nil {
		return nil
	}
	var sites []uint64
	made := false
	for _, c := range calls {
		switch c.Target {
		case newproc1.Entry:
			made = true
		case runqput.Entry:
			if made {
				sites = append(sites, c.Addr)
			}
		}
	}
	return sites
}

// entry adds an entry probe on the first instruction after the stack check
// (fires once per call, emulated rather than single-stepped).
func (p *Plan) entry(bin *target.Binary, name string, prog Program, reg int) error {
	fn, err := bin.Func(name)
	if err != nil {
		return fmt.Errorf("%s not watched: %w", name, err)
	}
	addr, at, err := bin.ProbeAddr(fn)
	if err != nil {
		return fmt.Errorf("%s not watched: %w", name, err)
	}
	if at == target.AtEntry {
		p.Notes = append(p.Notes, fmt.Sprintf("%s probed at its first instruction (no frame set-up found)", name))
	}
	// arm64's place after the stack check is single-stepped too, but the
	// budget's calibration measures that very place as the entry cost.
	stepped := at == target.AtEntry || at == target.AfterStackCheck
	p.Points = append(p.Points, Point{Program: prog, Func: name, Address: addr, ContextArg: reg, Stepped: stepped})
	return nil
}

// moduleVersion returns the version of module path linked into bin.
func moduleVersion(bin *target.Binary, path string) string {
	for _, m := range bin.Modules {
		if m.Path == path {
			return m.Version
		}
	}
	return ""
}

func (p *Plan) layout(bin *target.Binary) error {
	l := &p.Layout
	otelVersion := moduleVersion(bin, "go.opentelemetry.io/otel/sdk")
	// field reads an offset from the table measured per release when it
	// knows the target's version, else from DWARF. The table holds what
	// DWARF says for each release (internal/layout's tests compare them),
	// and costs nothing, where DWARF costs seconds on a large binary.
	field := func(dst *uint64, typ, path string) error {
		var (
			off uint64
			ok  bool
		)
		if strings.HasPrefix(typ, "go.opentelemetry.io/") {
			off, ok = layout.OTel(otelVersion, typ, path)
		} else {
			off, ok = layout.Runtime(bin.GoVersion, typ, path)
		}
		if ok {
			*dst = off
			return nil
		}
		off, err := bin.FieldOffset(typ, path)
		if errors.Is(err, target.ErrNoLayout) {
			err = fmt.Errorf("%w, and no layout table for this version (Go %s, OTel SDK %s; known: %s)",
				err, bin.GoVersion, otelVersion, strings.Join(layout.Versions(), ", "))
		}
		if err != nil {
			return fmt.Errorf("offset of %s.%s: %w", typ, path, err)
		}
		*dst = off
		return nil
	}
	for _, f := range []struct {
		dst       *uint64
		typ, path string
	}{
		{&l.GGoid, "runtime.g", "goid"},
		{&l.GM, "runtime.g", "m"},
		{&l.GSchedBP, "runtime.g", "sched.bp"},
		{&l.MCurg, "runtime.m", "curg"},
	} {
		if err := field(f.dst, f.typ, f.path); err != nil {
			return fmt.Errorf("%w: %w", err, ErrUnsupported)
		}
	}
	// Optional: without them, channel hand-offs are not watched (NewPlan).
	for _, f := range []struct {
		dst       *uint64
		typ, path string
	}{
		{&l.ChanQcount, "runtime.hchan", "qcount"},
		{&l.ChanDataqsiz, "runtime.hchan", "dataqsiz"},
		{&l.ChanElemsize, "runtime.hchan", "elemsize"},
		{&l.ChanClosed, "runtime.hchan", "closed"},
		{&l.ChanSendx, "runtime.hchan", "sendx"},
		{&l.ChanRecvx, "runtime.hchan", "recvx"},
		{&l.ChanRecvq, "runtime.hchan", "recvq.first"},
		{&l.ChanSendq, "runtime.hchan", "sendq.first"},
		{&l.SudogG, "runtime.sudog", "g"},
		{&l.SudogElem, "runtime.sudog", sudogElem(bin)},
		{&l.SudogIsSelect, "runtime.sudog", "isSelect"},
		{&l.ChanBuf, "runtime.hchan", "buf"}, // last: set says all are
	} {
		if err := field(f.dst, f.typ, f.path); err != nil {
			l.ChanBuf = 0
			p.Notes = append(p.Notes, fmt.Sprintf("channel hand-offs not watched: %v", err))
			break
		}
	}
	// Optional: without it, a receiver parked in a multi-case select is
	// not handed an element (channels).
	if l.ChanBuf != 0 {
		if err := field(&l.GSelectDone, "runtime.g", "selectDone"); err != nil {
			l.GSelectDone = 0
			p.Notes = append(p.Notes, fmt.Sprintf("hand-offs to a receiver parked in a multi-case select not watched: %v", err))
		}
	}
	// Optional: without it, AfterFunc work is not followed (NewPlan).
	if err := field(&l.GSchedCtxt, "runtime.g", "sched.ctxt"); err != nil {
		l.GSchedCtxt = 0
	}
	// Optional (Go 1.21 and later): without it, the spawn probe finds the
	// spawner by m.curg, two reads more.
	if err := field(&l.GParentGoid, "runtime.g", "parentGoid"); err != nil {
		l.GParentGoid = 0
	}
	// A context type the binary does not link only means that no context
	// of it can occur there: a program that never calls WithCancel has no
	// *context.cancelCtx. Each is watched if present.
	// Every type looked up below, found in one batch: two passes over the
	// type data in all, not two per type.
	names := []string{"*context.valueCtx", "*context.cancelCtx", "*context.timerCtx", "*context.afterFuncCtx",
		"*context.withoutCancelCtx", "*context.stopCtx", "context.backgroundCtx", "context.todoCtx",
		"*context.emptyCtx", "string", "[]uint8", otelTrace + ".traceContextKeyType", "*" + otelSDK + ".recordingSpan",
		otelTrace + ".nonRecordingSpan", otelSDK + ".nonRecordingSpan"}
	names = append(names, contextWrapperTypes...)
	type found struct {
		addr uint64
		err  error
	}
	batch := map[string]found{}
	addrs, errs := bin.TypeAddrs(names)
	for i, n := range names {
		batch[n] = found{addrs[i], errs[i]}
	}
	typeAddr := func(name string) (uint64, error) {
		if f, ok := batch[name]; ok {
			return f.addr, f.err
		}
		return bin.TypeAddr(name)
	}
	typ := func(dst *uint64, name string) {
		addr, err := typeAddr(name)
		if err != nil {
			p.Notes = append(p.Notes, fmt.Sprintf("type %s not in this binary", name))
			return
		}
		*dst = addr
	}
	for _, t := range []struct {
		dst  *uint64
		name string
	}{
		{&l.ValueCtx, "*context.valueCtx"},
		{&l.CancelCtx, "*context.cancelCtx"},
		{&l.TimerCtx, "*context.timerCtx"},
		{&l.AfterFuncCtx, "*context.afterFuncCtx"},
		{&l.WithoutCancelCtx, "*context.withoutCancelCtx"},
		{&l.StopCtx, "*context.stopCtx"},
		{&l.BackgroundCtx, "context.backgroundCtx"},
		{&l.TodoCtx, "context.todoCtx"},
		{&l.EmptyCtx, "*context.emptyCtx"},
		{&l.String, "string"},
		{&l.Bytes, "[]uint8"},
	} {
		typ(t.dst, t.name)
	}
	// Scope rule 1 reads a cancelCtx's err: needed when the type is there.
	if l.CancelCtx != 0 {
		if err := field(&l.CancelErr, "context.cancelCtx", "err"); err != nil {
			return fmt.Errorf("%w: %w", err, ErrUnsupported)
		}
	}
	// The static itabs of the two types most walked: the walk knows a
	// node of either from its itab pointer, without reading the itab.
	// Without them (a PIE linked externally has no .itablink), every node
	// costs that read.
	if itabs, err := bin.ContextItabs(); err == nil {
		l.ValueCtxItab = itabs[l.ValueCtx]
		l.CancelCtxItab = itabs[l.CancelCtx]
	}
	// Wrappers known by name, and every struct type converted to a
	// context.Context whose first field is an embedded context.Context.
	seen := map[uint64]bool{}
	var wrappers []uint64
	for _, name := range contextWrapperTypes {
		if addr, err := typeAddr(name); err == nil {
			wrappers = append(wrappers, addr)
		}
	}
	more, err := bin.ContextWrappers()
	if err != nil {
		p.Notes = append(p.Notes, fmt.Sprintf("context wrapper types other than %s not walked through: %v", strings.Join(contextWrapperTypes, ", "), err))
	}
	for _, addr := range append(wrappers, more...) {
		if !seen[addr] {
			seen[addr] = true
			p.ContextWrappers = append(p.ContextWrappers, addr)
		}
	}
	if len(p.ContextWrappers) > MaxContextWrappers {
		p.Notes = append(p.Notes, fmt.Sprintf("%d context wrapper types, the first %d walked through", len(p.ContextWrappers), MaxContextWrappers))
		p.ContextWrappers = p.ContextWrappers[:MaxContextWrappers]
	}
	// The OTel span key and span types, when the target links OTel.
	if typ(&l.SpanKey, otelTrace+".traceContextKeyType"); l.SpanKey == 0 {
		return nil
	}
	typ(&l.RecordingSpan, "*"+otelSDK+".recordingSpan")
	typ(&l.NonRecordingSpan, otelTrace+".nonRecordingSpan")
	for _, f := range []struct {
		dst       *uint64
		typ, path string
	}{
		{&l.RecordingSpanSC, otelSDK + ".recordingSpan", "spanContext"},
		{&l.RecordingSpanParent, otelSDK + ".recordingSpan", "parent"},
		{&l.RecordEnd, otelSDK + ".recordingSpan", "endTime"},
		{&l.NonRecordingSpanSC, otelTrace + ".nonRecordingSpan", "sc"},
	} {
		if err := field(f.dst, f.typ, f.path); err != nil {
			p.Warnings = append(p.Warnings, fmt.Sprintf("OTel span layout: %v", err))
			if f.typ == otelSDK+".recordingSpan" {
				l.RecordingSpan = 0
			} else {
				l.NonRecordingSpan = 0
			}
		}
	}
	// The probes read a SpanContext as trace id at 0, span id at 16.
	var tid, sid uint64
	err1 := field(&tid, otelTrace+".SpanContext", "traceID")
	err2 := field(&sid, otelTrace+".SpanContext", "spanID")
	if err := errors.Join(err1, err2); err != nil || tid != 0 || sid != 16 {
		p.Warnings = append(p.Warnings, fmt.Sprintf("OTel spans not watched: SpanContext layout unknown (%v)", err))
		l.SpanKey = 0
	}
	if l.RecordingSpan == 0 && l.NonRecordingSpan == 0 {
		p.Warnings = append(p.Warnings, "OTel spans not watched: span layouts unknown for this SDK version")
		l.SpanKey = 0
	}
	// Where the SDK's tracer starts spans, so that the probes can tell a
	// span started on a goroutine from one re-attached there
	// (stale-parent). ContextWithSpan is usually inlined into Start.
	if l.RecordingSpan != 0 {
		if fn, err := bin.Func(otelSDK + ".(*tracer).Start"); err == nil {
			l.TracerStart, l.TracerStartEnd = fn.Entry, fn.End
			if fn, err := bin.Func(otelTrace + ".ContextWithSpan"); err == nil {
				l.ContextWithSpan, l.ContextWithSpanEnd = fn.Entry, fn.End
			}
		} else {
			p.Notes = append(p.Notes, fmt.Sprintf("stale-parent not watched: %s.(*tracer).Start not found: %v", otelSDK, err))
		}
	}
	// The SDK's own span for unsampled traces.
	if typ(&l.SDKNonRecordingSpan, otelSDK+".nonRecordingSpan"); l.SDKNonRecordingSpan != 0 {
		if err := field(&l.SDKNonRecordingSpanSC, otelSDK+".nonRecordingSpan", "sc"); err != nil {
			l.SDKNonRecordingSpan = 0
			p.Notes = append(p.Notes, fmt.Sprintf("unsampled OTel spans not watched: %v", err))
		}
	}
	return nil
}

// ForProcess returns the configuration and points for a process that
// loaded the binary with the given bias (run-time minus link-time address).
// It first checks that every point starts an instruction of its function
// (see verify), so the binary NewPlan was given must still be open.
func (p *Plan) ForProcess(pid int, bias uint64, fileOffset func(uint64) (uint64, error)) (Config, []Point, error) {
	if err := p.verify(); err != nil {
		return Config{}, nil, err
	}
	cfg := Config{PID: pid, Layout: p.Layout, Keys: append([]Key(nil), p.Keys...)}
	for _, a := range p.ContextWrappers {
		cfg.ContextWrappers = append(cfg.ContextWrappers, a+bias)
	}
	if bias != 0 {
		l := &cfg.Layout
		for _, a := range []*uint64{
			&l.ValueCtx, &l.ValueCtxItab, &l.CancelCtx, &l.CancelCtxItab, &l.TimerCtx, &l.AfterFuncCtx, &l.WithoutCancelCtx, &l.StopCtx,
			&l.BackgroundCtx, &l.TodoCtx, &l.EmptyCtx, &l.String, &l.Bytes,
			&l.SpanKey, &l.RecordingSpan, &l.NonRecordingSpan, &l.SDKNonRecordingSpan,
			&l.TracerStart, &l.TracerStartEnd, &l.ContextWithSpan, &l.ContextWithSpanEnd,
			&l.ChanRecvText, &l.ChanRecvTextEnd, &l.SelectText, &l.SelectTextEnd,
		} {
			if *a != 0 {
				*a += bias
			}
		}
		for i := range cfg.Keys {
			if cfg.Keys[i].Type != 0 {
				cfg.Keys[i].Type += bias
			}
		}
	}
	for _, r := range p.UserText {
		cfg.UserText = append(cfg.UserText, Range{Start: r.Start + bias, End: r.End + bias})
	}
	points := make([]Point, len(p.Points))
	for i, pt := range p.Points {
		off, err := fileOffset(pt.Address)
		if err != nil {
			return Config{}, nil, fmt.Errorf("file offset of %s at %#x: %w", pt.Func, pt.Address, err)
		}
		pt.FileOffset = off
		pt.Address += bias
		points[i] = pt
		if !slices.Contains(cfg.Programs, pt.Program) {
			cfg.Programs = append(cfg.Programs, pt.Program)
		}
	}
	return cfg, points, nil
}
