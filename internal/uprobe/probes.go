// Package uprobe loads ctxwatch's eBPF program for one target process,
// attaches it with uprobes (never uretprobes: Go moves stacks) and reads
// what it reports from a ring buffer.
package uprobe

import (
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/ctxwatch/ctxwatch/bpf"
	"github.com/ctxwatch/ctxwatch/internal/target"
)

// Program names an eBPF program of bpf/ctxwatch.c.
type Program int

const (
	// WithValue goes on context.WithValue's entry.
	WithValue Program = iota
	// ContextArg0 goes on the entry of a function whose first argument is
	// the context it uses (WithCancel, WithDeadlineCause, ...).
	ContextArg0
	// CheckFunc goes on the entry of a --check-func function.
	CheckFunc
	// Spawn goes on runtime.newproc.func1's CALL of runqput, or on every
	// RET of runtime.newproc1 (Layout.SpawnGArg says which).
	Spawn
	// TimeAfterFunc goes on time.AfterFunc's entry: work registered
	// inside a trace, run later by the timer.
	TimeAfterFunc
	// ContextAfterFunc goes on context.AfterFunc's entry: registered
	// work, and a check of its context.
	ContextAfterFunc
	// SlogHandle goes on log/slog's (*Logger).log and logAttrs, at their
	// call of the handler's Handle: a log record written.
	SlogHandle
	// LogFunc goes on the entry of a --log-func function.
	LogFunc
	// ChanSend goes on runtime.chansend's entry: an element sent.
	ChanSend
	// ChanRecv goes on runtime.chanrecv's entry: an element received.
	ChanRecv
	// SelectEnter goes on a CALL of runtime.selectgo in user code: a
	// multi-case select about to run, whose receives are planned.
	SelectEnter
	// SelectResult goes where a select's function tests the results of
	// its call of runtime.selectgo: the case chosen (on a jump, or
	// single-stepped where Stepped says so).
	SelectResult
)

func (p Program) String() string {
	return [...]string{"with_value", "ctx_arg0", "check_func", "spawn", "time_after_func", "context_after_func",
		"slog_handle", "log_func", "chan_send", "chan_recv", "select_enter", "select_result"}[p]
}

// KeyKind says how a user trace key is matched.
type KeyKind uint8

const (
	KeyType       KeyKind = 1 // by the key's type descriptor: a type with one value (struct{})
	KeyString     KeyKind = 2 // a plain string key, by its text
	KeyTypeString KeyKind = 3 // a named string type, by its type and text
	KeyTypeInt    KeyKind = 4 // a named integer type, by its type and value
)

// MaxKeys is the number of user trace keys the probes match.
const MaxKeys = 4

// MaxContextWrappers is the number of context wrapper types the probes
// walk through (the size of bpf/ctxwatch.c's ctx_wrappers map).
const MaxContextWrappers = 256

// MaxKeyLen is the longest string key the probes match.
const MaxKeyLen = 32

// Key is a user trace key.
type Key struct {
	Kind KeyKind
	Type uint64 // KeyType, KeyTypeString, KeyTypeInt: run-time address of the key's type descriptor
	Text string // KeyString, KeyTypeString: the key
	// KeyTypeInt: the key's value, and the mask of the type's size (the
	// probes read 8 bytes where the value is boxed).
	Int, IntMask uint64
}

// Layout holds the offsets and type descriptor addresses the probes rely
// on. Addresses are run-time addresses in the target (load bias applied);
// zero means "not in this binary".
type Layout struct {
	GGoid, GM, GSchedBP, MCurg uint64
	// GParentGoid is g.parentGoid (Go 1.21 and later), by which the spawn
	// probe knows the spawner without reading m.curg; 0 when absent.
	GParentGoid uint64
	// GSchedCtxt is g.sched.ctxt, the closure a new goroutine runs; 0
	// when work registered with AfterFunc is not followed.
	GSchedCtxt uint64

	// The static itabs of context.Context for *valueCtx and *cancelCtx
	// (0: none), by which the context walk knows them without a read.
	ValueCtxItab, CancelCtxItab uint64

	ValueCtx, CancelCtx, TimerCtx, AfterFuncCtx     uint64
	WithoutCancelCtx, StopCtx                       uint64
	BackgroundCtx, TodoCtx, EmptyCtx                uint64
	CancelErr                                       uint64
	String, Bytes                                   uint64
	SpanKey, RecordingSpan, NonRecordingSpan        uint64
	RecordingSpanSC, RecordingSpanParent, RecordEnd uint64
	NonRecordingSpanSC                              uint64
	// The SDK's span for unsampled traces (sdk/trace.nonRecordingSpan).
	SDKNonRecordingSpan, SDKNonRecordingSpanSC uint64
	// SpawnGArg is the argument register holding the new g at the spawn
	// probe: 1 at the CALL of runqput, 0 (the result) at newproc1's RETs.
	SpawnGArg uint64
	// TracerStart is the text of the OTel SDK's (*tracer).Start, and
	// ContextWithSpan that of trace.ContextWithSpan where the binary has
	// it as a function (run-time addresses, end exclusive): a WithValue
	// called from there stores a span started by the calling goroutine
	// (stale-parent). Zero when the SDK is not linked.
	TracerStart, TracerStartEnd         uint64
	ContextWithSpan, ContextWithSpanEnd uint64
	// Channel fields, for hand-offs (lost-at-handoff): runtime.hchan's
	// and runtime.sudog's. ChanBuf is 0 when hand-offs are not watched.
	ChanQcount, ChanDataqsiz, ChanBuf, ChanElemsize, ChanClosed uint64
	ChanSendx, ChanRecvx, ChanRecvq, ChanSendq                  uint64
	SudogG, SudogElem, SudogIsSelect                            uint64
	// ChanRecvText is runtime.chanrecv's text (end exclusive): a parked
	// receiver's frames are found from the return into it.
	ChanRecvText, ChanRecvTextEnd uint64
	// SelectText is runtime.selectgo's text (end exclusive), and
	// GSelectDone the offset of runtime.g.selectDone: a receiver parked
	// in a multi-case select is handed an element only when both are
	// known. Zero when selects are not watched.
	SelectText, SelectTextEnd, GSelectDone uint64
}

// Range is a run-time text range of user code.
type Range struct{ Start, End uint64 }

// MaxProcs is the number of processes a shared program watches (the size
// of bpf/ctxwatch.c's procs map).
const MaxProcs = 1024

// MaxRanges is the number of user code ranges the probes search.
const MaxRanges = 4096

// Config is what the probes need to know about one process, or about
// several processes of one executable that share the program.
type Config struct {
	// PID is the process watched. Zero makes a program that processes of
	// one executable, at the same load address, share: it watches those
	// added with AddProcess, and Attach places each probe once for all of
	// them (ctxwatch node: twenty replicas, one set of uprobes).
	PID      int
	Layout   Layout
	Keys     []Key
	UserText []Range // sorted, disjoint
	// ContextWrappers are run-time addresses of type descriptors whose
	// values are structs with an embedded context.Context first (os/signal's
	// signalCtx): the probes' context walk goes through them.
	ContextWrappers []uint64
	// Programs are those the probes use (Plan.ForProcess lists them):
	// only they are loaded. Nil loads every one.
	Programs []Program
	// SingleLinks makes one link per probe even where the kernel has
	// uprobe_multi links (the bench compares the two).
	SingleLinks bool
	// Spec is the object, parsed ahead (ParseSpec); nil parses it in Load.
	Spec *Spec
}

// Point is one place to attach a program.
type Point struct {
	Program    Program
	Func       string // for messages
	Address    uint64 // run-time address, as the probe sees it in RIP
	FileOffset uint64 // where the uprobe goes in the executable file
	ContextArg int    // CheckFunc, LogFunc: first register of the context argument
	// Stepped says the kernel single-steps the probed instruction (a RET,
	// or a function's first instruction) instead of emulating it: a hit
	// costs several times more.
	Stepped bool
	// CountedApart says the program counts its hits apart as well
	// (SteppedHits), so the budget charges only them the stepped cost.
	CountedApart bool

	fn target.Func // the function that holds Address, when known (verify)
}

// Probes is the eBPF program loaded for one process and its uprobes.
type Probes struct {
	objs  bpf.CtxwatchObjects
	links []link.Link
	// spawnLinks is how many of links, at their end, are spawn probes.
	spawnLinks int
	// multi says the programs were loaded for uprobe_multi links: one
	// link per program places all its probes (MultiLinks).
	multi bool
	pid   int
	// Goroutine states deleted by ResetGoroutines and RemoveProcess, for
	// StatesEvicted.
	forgotten uint64
	// What the last Attach placed, for Reattach.
	ex     *link.Executable
	points []Point
}

var (
	// ErrTooManyKeys means more user trace keys than the probes match.
	ErrTooManyKeys = errors.New("too many trace keys")
	// ErrTooManyRanges means user code is split in more ranges than the probes search.
	ErrTooManyRanges = errors.New("too many user code ranges")
)

// Maps are maps made before Load, to be used by the program instead of
// its own: a nil field means the program makes its own.
type Maps struct {
	// Events is a ring buffer shared with other processes' programs.
	Events *ebpf.Map
	// Goroutines is a goroutine state map from NewGoroutineMap, which
	// programs can share: its keys hold the pid.
	Goroutines *ebpf.Map
}

// NewGoroutineMap makes a goroutine state map for Load. It does not depend
// on the target, and an LRU map of this size takes tens of milliseconds to
// preallocate: a caller can make it while it inspects the target.
func NewGoroutineMap() (*ebpf.Map, error) {
	spec, err := ParseSpec()
	if err != nil {
		return nil, err
	}
	return spec.NewGoroutineMap()
}

// Spec is the probes' eBPF object, parsed: about 10 ms on a small
// machine, which a caller can spend while it inspects the target, with
// MakeMaps. One Spec serves one Load, which sets its variables.
type Spec struct {
	spec *ebpf.CollectionSpec
	maps map[string]*ebpf.Map // MakeMaps'
}

// MakeMaps makes the maps that do not depend on the target ahead of Load
// (another 10 ms or so; Load makes any not made here): all but the
// variables' (.rodata, .bss) and those a Load may be given (Maps).
func (s *Spec) MakeMaps() error {
	if s.spec == nil {
		return errors.New("make eBPF maps: the Spec was used by a Load")
	}
	s.maps = map[string]*ebpf.Map{}
	for name, ms := range s.spec.Maps {
		if strings.HasPrefix(name, ".") || name == bpf.CtxwatchMapEvents || name == bpf.CtxwatchMapGoroutines {
			continue
		}
		m, err := ebpf.NewMap(ms)
		if err != nil {
			s.Close()
			return fmt.Errorf("create eBPF map %s: %w", name, err)
		}
		s.maps[name] = m
	}
	return nil
}

// Close releases the maps MakeMaps made (a Load holds its own).
func (s *Spec) Close() {
	for _, m := range s.maps {
		m.Close()
	}
	s.maps = nil
}

// ParseSpec parses the probes' eBPF object.
func ParseSpec() (*Spec, error) {
	spec, err := bpf.LoadCtxwatch()
	if err != nil {
		return nil, fmt.Errorf("load eBPF spec: %w", err)
	}
	return &Spec{spec: spec}, nil
}

// NewGoroutineMap makes a goroutine state map for Load from s.
func (s *Spec) NewGoroutineMap() (*ebpf.Map, error) {
	m, err := ebpf.NewMap(s.spec.Maps[bpf.CtxwatchMapGoroutines])
	if err != nil {
		return nil, fmt.Errorf("create the goroutine map: %w", err)
	}
	return m, nil
}

// RingWakeFraction: an event wakes the ring buffer's reader when it takes
// the unread data past a multiple of this fraction of the ring; otherwise
// the reader polls on its own schedule.
const RingWakeFraction = 16

// Load loads the program for one process, with the maps of shared where
// given (the caller keeps its references and closes them); otherwise the
// program makes its own (see Events).
func Load(cfg Config, shared Maps) (*Probes, error) {
	if cfg.Spec == nil {
		var err error
		if cfg.Spec, err = ParseSpec(); err != nil {
			return nil, err
		}
	}
	spec := cfg.Spec.spec
	cfg.Spec.spec = nil // its variables are this Load's: not to be loaded again
	if spec == nil {
		return nil, errors.New("load eBPF program: its Spec was used by another Load")
	}
	defer cfg.Spec.Close()
	if len(cfg.Keys) > MaxKeys {
		return nil, fmt.Errorf("%d keys, at most %d: %w", len(cfg.Keys), MaxKeys, ErrTooManyKeys)
	}
	if len(cfg.UserText) > MaxRanges {
		return nil, fmt.Errorf("%d ranges, at most %d: %w", len(cfg.UserText), MaxRanges, ErrTooManyRanges)
	}
	l := cfg.Layout
	consts := map[string]any{
		bpf.CtxwatchVarCfgTgid:                uint32(cfg.PID),
		bpf.CtxwatchVarOffG_goid:              l.GGoid,
		bpf.CtxwatchVarOffG_m:                 l.GM,
		bpf.CtxwatchVarOffG_schedBp:           l.GSchedBP,
		bpf.CtxwatchVarOffM_curg:              l.MCurg,
		bpf.CtxwatchVarOffG_parentGoid:        l.GParentGoid,
		bpf.CtxwatchVarOffG_schedCtxt:         l.GSchedCtxt,
		bpf.CtxwatchVarTypValueCtx:            l.ValueCtx,
		bpf.CtxwatchVarItabValueCtx:           l.ValueCtxItab,
		bpf.CtxwatchVarItabCancelCtx:          l.CancelCtxItab,
		bpf.CtxwatchVarTypCancelCtx:           l.CancelCtx,
		bpf.CtxwatchVarTypTimerCtx:            l.TimerCtx,
		bpf.CtxwatchVarTypAfterFuncCtx:        l.AfterFuncCtx,
		bpf.CtxwatchVarTypWithoutCancelCtx:    l.WithoutCancelCtx,
		bpf.CtxwatchVarTypStopCtx:             l.StopCtx,
		bpf.CtxwatchVarTypBackgroundCtx:       l.BackgroundCtx,
		bpf.CtxwatchVarTypTodoCtx:             l.TodoCtx,
		bpf.CtxwatchVarTypEmptyCtx:            l.EmptyCtx,
		bpf.CtxwatchVarOffCancelErr:           l.CancelErr,
		bpf.CtxwatchVarTypString:              l.String,
		bpf.CtxwatchVarTypBytes:               l.Bytes,
		bpf.CtxwatchVarTypSpanKey:             l.SpanKey,
		bpf.CtxwatchVarTypRecordingSpan:       l.RecordingSpan,
		bpf.CtxwatchVarTypNonrecordingSpan:    l.NonRecordingSpan,
		bpf.CtxwatchVarOffRsSc:                l.RecordingSpanSC,
		bpf.CtxwatchVarOffRsParent:            l.RecordingSpanParent,
		bpf.CtxwatchVarOffRsEnd:               l.RecordEnd,
		bpf.CtxwatchVarOffNrsSc:               l.NonRecordingSpanSC,
		bpf.CtxwatchVarTypSdkNonrecordingSpan: l.SDKNonRecordingSpan,
		bpf.CtxwatchVarOffSdkNrsSc:            l.SDKNonRecordingSpanSC,
		bpf.CtxwatchVarCfgSpawnG_arg:          uint8(l.SpawnGArg),
		bpf.CtxwatchVarTxtTracerStart:         l.TracerStart,
		bpf.CtxwatchVarTxtTracerStartEnd:      l.TracerStartEnd,
		bpf.CtxwatchVarTxtCtxWithSpan:         l.ContextWithSpan,
		bpf.CtxwatchVarTxtCtxWithSpanEnd:      l.ContextWithSpanEnd,
		bpf.CtxwatchVarOffC_qcount:            l.ChanQcount,
		bpf.CtxwatchVarOffC_dataqsiz:          l.ChanDataqsiz,
		bpf.CtxwatchVarOffC_buf:               l.ChanBuf,
		bpf.CtxwatchVarOffC_elemsize:          l.ChanElemsize,
		bpf.CtxwatchVarOffC_closed:            l.ChanClosed,
		bpf.CtxwatchVarOffC_sendx:             l.ChanSendx,
		bpf.CtxwatchVarOffC_recvx:             l.ChanRecvx,
		bpf.CtxwatchVarOffC_recvq:             l.ChanRecvq,
		bpf.CtxwatchVarOffC_sendq:             l.ChanSendq,
		bpf.CtxwatchVarOffSgG:                 l.SudogG,
		bpf.CtxwatchVarOffSgElem:              l.SudogElem,
		bpf.CtxwatchVarOffSgIsSelect:          l.SudogIsSelect,
		bpf.CtxwatchVarTxtChanrecv:            l.ChanRecvText,
		bpf.CtxwatchVarTxtChanrecvEnd:         l.ChanRecvTextEnd,
		bpf.CtxwatchVarTxtSelectgo:            l.SelectText,
		bpf.CtxwatchVarTxtSelectgoEnd:         l.SelectTextEnd,
		bpf.CtxwatchVarOffG_selectDone:        l.GSelectDone,
		bpf.CtxwatchVarN_keys:                 uint32(len(cfg.Keys)),
		bpf.CtxwatchVarN_ranges:               uint32(len(cfg.UserText)),
	}
	var (
		kinds  [MaxKeys]uint8
		types  [MaxKeys]uint64
		strs   [MaxKeys][MaxKeyLen]uint8
		strlen [MaxKeys]uint32
		ints   [MaxKeys]uint64
		masks  [MaxKeys]uint64
	)
	for i, k := range cfg.Keys {
		kinds[i] = uint8(k.Kind)
		types[i] = k.Type
		ints[i], masks[i] = k.Int, k.IntMask
		if len(k.Text) > MaxKeyLen {
			return nil, fmt.Errorf("string key %q is longer than %d bytes", k.Text, MaxKeyLen)
		}
		copy(strs[i][:], k.Text)
		strlen[i] = uint32(len(k.Text))
	}
	var ranges [MaxRanges][2]uint64 // struct range {start, end}
	for i, r := range cfg.UserText {
		ranges[i] = [2]uint64{r.Start, r.End}
	}
	consts[bpf.CtxwatchVarUserRanges] = ranges
	consts[bpf.CtxwatchVarKeysKind] = kinds
	consts[bpf.CtxwatchVarKeysType] = types
	consts[bpf.CtxwatchVarKeysStr] = strs
	consts[bpf.CtxwatchVarKeysStrLen] = strlen
	consts[bpf.CtxwatchVarKeysInt] = ints
	consts[bpf.CtxwatchVarKeysIntMask] = masks
	for name, v := range consts {
		vs, ok := spec.Variables[name]
		if !ok {
			return nil, fmt.Errorf("eBPF variable %s missing from object", name)
		}
		if err := vs.Set(v); err != nil {
			return nil, fmt.Errorf("set eBPF variable %s: %w", name, err)
		}
	}
	opts := ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{}}
	for name, m := range cfg.Spec.maps {
		opts.MapReplacements[name] = m
	}
	if shared.Events != nil {
		// The replacement must match the spec, size included.
		spec.Maps[bpf.CtxwatchMapEvents].MaxEntries = shared.Events.MaxEntries()
		opts.MapReplacements[bpf.CtxwatchMapEvents] = shared.Events
	}
	// An event wakes the reader each time the unread data passes a
	// sixteenth of the ring: the agent drains that in about a
	// millisecond, with the rest to spare.
	wake := spec.Variables[bpf.CtxwatchVarRingWakeBytes]
	if wake == nil {
		return nil, fmt.Errorf("eBPF variable ring_wake_bytes missing from object")
	}
	if err := wake.Set(uint64(spec.Maps[bpf.CtxwatchMapEvents].MaxEntries / RingWakeFraction)); err != nil {
		return nil, fmt.Errorf("set eBPF variable ring_wake_bytes: %w", err)
	}
	if shared.Goroutines != nil {
		opts.MapReplacements[bpf.CtxwatchMapGoroutines] = shared.Goroutines
	}
	p := &Probes{pid: cfg.PID, multi: !cfg.SingleLinks && MultiLinks()}
	if p.multi {
		// A program loaded for uprobe_multi attaches through those links
		// alone: the choice is made here, once.
		for _, ps := range spec.Programs {
			ps.AttachType = ebpf.AttachTraceUprobeMulti
		}
	}
	if err := loadObjects(spec, opts, cfg.Programs, &p.objs); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load eBPF program: %+v", ve)
		}
		return nil, fmt.Errorf("load eBPF program: %w", err)
	}
	if len(cfg.ContextWrappers) > MaxContextWrappers {
		p.Close()
		return nil, fmt.Errorf("%d context wrapper types, at most %d", len(cfg.ContextWrappers), MaxContextWrappers)
	}
	for _, typ := range cfg.ContextWrappers {
		if err := p.objs.CtxWrappers.Put(typ, uint8(1)); err != nil {
			p.Close()
			return nil, fmt.Errorf("add context wrapper type %#x: %w", typ, err)
		}
	}
	return p, nil
}

// loadObjects loads spec's maps, and of its programs those that serve the
// probes of programs (every one when programs is nil), into objs; the
// others stay nil. The kernel's verifier, most of the time it takes to
// attach, runs on the programs in two loads at once, which share the maps
// made before them: on a machine of two or more CPUs the wait is about
// halved.
func loadObjects(spec *ebpf.CollectionSpec, opts ebpf.CollectionOptions, programs []Program, objs *bpf.CtxwatchObjects) error {
	names := make(map[string]bool)
	for _, pr := range programs {
		if spec.Programs[pr.String()] == nil {
			return fmt.Errorf("eBPF program %s missing from object", pr)
		}
		names[pr.String()] = true
		if pr == SelectResult {
			// Its single-stepped variant serves the points marked Stepped.
			names[bpf.CtxwatchProgSelectResultStepped] = true
		}
	}
	if programs == nil {
		for name := range spec.Programs {
			names[name] = true
		}
	}
	mapsOnly := spec.Copy()
	mapsOnly.Programs = map[string]*ebpf.ProgramSpec{}
	maps, err := ebpf.NewCollectionWithOptions(mapsOnly, opts)
	if err != nil {
		return fmt.Errorf("create the eBPF maps: %w", err)
	}
	defer maps.Close() // what was not assigned
	shared := ebpf.CollectionOptions{Programs: opts.Programs, MapReplacements: maps.Maps}

	// Two halves of about the same size (instructions before verification).
	var sorted []string
	for name := range names {
		sorted = append(sorted, name)
	}
	size := func(n string) int { return len(spec.Programs[n].Instructions) }
	slices.SortFunc(sorted, func(a, b string) int { return size(b) - size(a) })
	var halves [2][]string
	var weight [2]int
	for _, n := range sorted {
		i := 0
		if weight[1] < weight[0] {
			i = 1
		}
		halves[i] = append(halves[i], n)
		weight[i] += size(n)
	}
	type loaded struct {
		coll *ebpf.Collection
		err  error
	}
	var results [2]loaded
	var wg sync.WaitGroup
	for i, half := range halves {
		if len(half) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := spec.Copy()
			s.Programs = make(map[string]*ebpf.ProgramSpec, len(half))
			for _, n := range half {
				s.Programs[n] = spec.Programs[n]
			}
			coll, err := ebpf.NewCollectionWithOptions(s, shared)
			results[i] = loaded{coll, err}
		}()
	}
	wg.Wait()
	var errs []error
	for _, r := range results {
		if r.err != nil {
			errs = append(errs, r.err)
		}
	}
	if len(errs) == 0 {
		progs := reflect.ValueOf(&objs.CtxwatchPrograms).Elem()
		for i := 0; i < progs.NumField(); i++ {
			name := progs.Type().Field(i).Tag.Get("ebpf")
			for _, r := range results {
				if r.coll != nil && r.coll.Programs[name] != nil {
					progs.Field(i).Set(reflect.ValueOf(r.coll.DetachProgram(name)))
				}
			}
		}
		if err := maps.Assign(&objs.CtxwatchMaps); err != nil {
			errs = append(errs, err)
		} else if err := maps.Assign(&objs.CtxwatchVariables); err != nil {
			errs = append(errs, err)
		}
	}
	for _, r := range results {
		if r.coll != nil {
			r.coll.Close() // the programs left: none, unless one failed
		}
	}
	if err := errors.Join(errs...); err != nil {
		objs.Close()
		return err
	}
	return nil
}

// Events is the ring buffer the program writes to.
func (p *Probes) Events() *ebpf.Map { return p.objs.Events }

// Attach places every point in the executable at path (for a running
// process, /proc/PID/exe, which works even if the file was replaced).
func (p *Probes) Attach(path string, points []Point) error {
	ex, err := link.OpenExecutable(path)
	if err != nil {
		return fmt.Errorf("open executable %s: %w", path, err)
	}
	p.ex, p.points = ex, points
	return p.attach()
}

// ErrNotAttached means Reattach was called before Attach.
var ErrNotAttached = errors.New("probes never attached")

// Reattach places again the points of the last Attach, after Detach (an
// overhead budget duty-cycles the probes). The goroutine states kept in
// the kernel went stale while the probes were out (spawns, first checks
// and new units of work went unseen), so they are forgotten first: a
// goroutine is judged again only from what it does once the probes are
// back. Calling it while attached does nothing.
func (p *Probes) Reattach() error {
	if p.ex == nil {
		return ErrNotAttached
	}
	if len(p.links) > 0 {
		return nil
	}
	if err := p.ResetGoroutines(); err != nil {
		return err
	}
	return p.attach()
}

// Attached reports whether the uprobes are in.
func (p *Probes) Attached() bool { return len(p.links) > 0 }

// MultiLinks reports whether this kernel has uprobe_multi links (Linux
// 6.6), with which one system call places, and one takes out, all of a
// program's probes in an executable: the uprobes themselves are the same
// (the same breakpoints, the same trap per hit), but a duty cycle's
// detach and attach make a link per program used, not one per probe. The
// kernel's answer is asked once and kept by the ebpf library.
func MultiLinks() bool { return features.HaveBPFLinkUprobeMulti() == nil }

// Multi reports whether the probes are placed with uprobe_multi links.
func (p *Probes) Multi() bool { return p.multi }

// ResetGoroutines forgets every goroutine state kept in the kernel. Call
// it only while detached: a probe running meanwhile could store a state
// derived from one being deleted.
func (p *Probes) ResetGoroutines() error {
	mine, err := p.watching()
	if err != nil {
		return err
	}
	return p.forget(mine)
}

// watching returns a test for the processes whose goroutine states are
// this program's: a goroutine map may be shared by several programs.
func (p *Probes) watching() (func(pid uint32) bool, error) {
	if p.pid != 0 {
		return func(pid uint32) bool { return pid == uint32(p.pid) }, nil
	}
	pids := map[uint32]bool{}
	var pid uint32
	var one uint8
	it := p.objs.Procs.Iterate()
	for it.Next(&pid, &one) {
		pids[pid] = true
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("list watched processes: %w", err)
	}
	return func(pid uint32) bool { return pids[pid] }, nil
}

// gkeyGoidBits splits a goroutine state key as bpf/ctxwatch.c makes it:
// the process id above the goroutine id.
const gkeyGoidBits = 42

// GoroutineKey is the goroutine map's key for goroutine goid of process pid.
func GoroutineKey(pid uint32, goid uint64) uint64 {
	return goid&(1<<gkeyGoidBits-1) | uint64(pid)<<gkeyGoidBits
}

// goroutineKeys lists the keys of the goroutine states kept in the kernel.
func (p *Probes) goroutineKeys() ([]uint64, error) {
	keys, err := p.goroutineKeysBatched()
	if !errors.Is(err, ebpf.ErrNotSupported) {
		return keys, err
	}
	return p.goroutineKeysEach()
}

// goroutineKeysEach lists the goroutine map a syscall per key (before
// 5.6, which has no batch operations).
func (p *Probes) goroutineKeysEach() ([]uint64, error) {
	var keys []uint64
	var prev any // nil: the first key
	for {
		var key uint64
		err := p.objs.Goroutines.NextKey(prev, &key)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return keys, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list goroutine states: %w", err)
		}
		keys = append(keys, key)
		prev = key
	}
}

// stateBatch is how many goroutine states one batch syscall reads: the
// values come along (about 200 bytes each), so not the whole map at once.
const stateBatch = 4096

// goroutineKeysBatched lists the goroutine map a batch at a time: a node
// agent does it at each exit of a watched process, and the map (shared by
// every program) holds up to 2^17 keys, a syscall each otherwise.
func (p *Probes) goroutineKeysBatched() ([]uint64, error) {
	var (
		keys   []uint64
		cursor ebpf.MapBatchCursor
		kbuf   = make([]uint64, stateBatch)
		vbuf   = make([]bpf.CtxwatchGstate, stateBatch)
	)
	for {
		n, err := p.objs.Goroutines.BatchLookup(&cursor, kbuf, vbuf, nil)
		keys = append(keys, kbuf[:n]...)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return keys, nil
		}
		if err != nil {
			return keys, fmt.Errorf("list goroutine states: %w", err)
		}
	}
}

// forget deletes the goroutine states of the processes for which del is true.
func (p *Probes) forget(del func(pid uint32) bool) error {
	keys, err := p.goroutineKeys()
	if err != nil {
		return err
	}
	var gone []uint64
	for _, k := range keys {
		if del(uint32(k >> gkeyGoidBits)) {
			gone = append(gone, k)
		}
	}
	for len(gone) > 0 {
		// A batch stops at the first key that is gone (the program or
		// the LRU deleted it meanwhile): that one is stepped over.
		n, err := p.objs.Goroutines.BatchDelete(gone[:min(len(gone), stateBatch)], nil)
		p.forgotten += uint64(n)
		gone = gone[n:]
		switch {
		case err == nil:
		case errors.Is(err, ebpf.ErrKeyNotExist):
			gone = gone[1:]
		case errors.Is(err, ebpf.ErrNotSupported):
			return p.forgetEach(gone)
		default:
			return fmt.Errorf("forget goroutine states: %w", err)
		}
	}
	return nil
}

// forgetEach is forget's deletion a key at a time (before 5.6).
func (p *Probes) forgetEach(keys []uint64) error {
	for _, k := range keys {
		err := p.objs.Goroutines.Delete(k)
		switch {
		case err == nil:
			p.forgotten++
		case !errors.Is(err, ebpf.ErrKeyNotExist):
			return fmt.Errorf("forget goroutine %d of pid %d: %w", k&(1<<gkeyGoidBits-1), k>>gkeyGoidBits, err)
		}
	}
	return nil
}

// AddProcess has a shared program (Config.PID 0) watch process pid.
func (p *Probes) AddProcess(pid int) error {
	if p.pid != 0 {
		return fmt.Errorf("add pid %d to the probes of pid %d: %w", pid, p.pid, ErrNotShared)
	}
	if err := p.objs.Procs.Put(uint32(pid), uint8(1)); err != nil {
		return fmt.Errorf("watch pid %d: %w", pid, err)
	}
	return nil
}

// RemoveProcess stops watching process pid, and forgets its goroutines:
// its pid may come back as another process of the same executable.
func (p *Probes) RemoveProcess(pid int) error {
	if p.pid != 0 {
		return fmt.Errorf("remove pid %d from the probes of pid %d: %w", pid, p.pid, ErrNotShared)
	}
	if err := p.objs.Procs.Delete(uint32(pid)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("stop watching pid %d: %w", pid, err)
	}
	if err := p.forgetStartSites(uint32(pid)); err != nil {
		return err
	}
	return p.forget(func(owner uint32) bool { return owner == uint32(pid) })
}

// StartCount is what the probes counted at one Start site of a process
// (bpf/ctxwatch.c's start_sites): the spans started on a parent span that
// the same goroutine had started, and of those the ones whose parent had
// ended. PC is the return address into the function that called the
// OTel SDK's (*tracer).Start.
type StartCount struct {
	PC, Started, Stale uint64
}

// StartCounts reads the Start site counters of process pid. The map is
// small (a program's Start sites), so it is listed a key at a time.
func (p *Probes) StartCounts(pid int) ([]StartCount, error) {
	var (
		out []StartCount
		k   bpf.CtxwatchStartKey
		v   bpf.CtxwatchStartCount
	)
	it := p.objs.StartSites.Iterate()
	for it.Next(&k, &v) {
		if k.Tgid == uint32(pid) {
			out = append(out, StartCount{PC: k.Pc, Started: v.Started, Stale: v.Stale})
		}
	}
	if err := it.Err(); err != nil {
		return out, fmt.Errorf("read start sites of pid %d: %w", pid, err)
	}
	return out, nil
}

// forgetStartSites deletes the Start site counters of process pid: its
// pid may come back as another process of the same executable.
func (p *Probes) forgetStartSites(pid uint32) error {
	var (
		gone []bpf.CtxwatchStartKey
		k    bpf.CtxwatchStartKey
		v    bpf.CtxwatchStartCount
	)
	it := p.objs.StartSites.Iterate()
	for it.Next(&k, &v) {
		if k.Tgid == pid {
			gone = append(gone, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("list start sites of pid %d: %w", pid, err)
	}
	for _, k := range gone {
		if err := p.objs.StartSites.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("forget start site %#x of pid %d: %w", k.Pc, pid, err)
		}
	}
	return nil
}

// ErrNotShared means AddProcess or RemoveProcess on probes made for one process.
var ErrNotShared = errors.New("probes not shared")

// StatesEvicted counts the goroutine states the kernel's LRU map dropped
// to make room: created, less deleted (by the program or the agent), less
// those still there. Most belong to goroutines that exited (the probes
// have no exit hook); one of a live goroutine loses what it inherited. It
// lists the map: call it at the end, not per refresh.
func (p *Probes) StatesEvicted() (uint64, error) {
	st, err := p.Stats()
	if err != nil {
		return 0, err
	}
	keys, err := p.goroutineKeys()
	if err != nil {
		return 0, err
	}
	mine, err := p.watching()
	if err != nil {
		return 0, err
	}
	gone := st.StatesDeleted + p.forgotten
	for _, k := range keys {
		if mine(uint32(k >> gkeyGoidBits)) {
			gone++
		}
	}
	if st.StatesCreated <= gone {
		return 0, nil
	}
	return st.StatesCreated - gone, nil
}

func (p *Probes) attach() error {
	// The spawn probes go in last, and come out first (Detach): a
	// goroutine whose spawn was seen then always finds the probes of its
	// checks in place. Were it spawned while they were still going in, its
	// first check could be missed and a later one taken for it: a false
	// lost-at-spawn (TestOverheadBudget, under the duty cycle's attaches).
	points := make([]Point, 0, len(p.points))
	for _, spawn := range []bool{false, true} {
		for _, pt := range p.points {
			if (pt.Program == Spawn) == spawn {
				points = append(points, pt)
			}
		}
	}
	// A link per point, or with uprobe_multi links a link per program, in
	// the order the programs first appear.
	var (
		progs   []*ebpf.Program
		batches [][]Point
	)
	batch := make(map[*ebpf.Program]int)
	for _, pt := range points {
		prog, err := p.program(pt)
		if err != nil {
			return err
		}
		i, ok := batch[prog]
		if !ok || !p.multi {
			i = len(batches)
			batch[prog] = i
			progs, batches = append(progs, prog), append(batches, nil)
		}
		batches[i] = append(batches[i], pt)
	}
	p.spawnLinks = 0
	for i, b := range batches {
		if err := p.link(progs[i], b); err != nil {
			return err
		}
		if b[0].Program == Spawn {
			p.spawnLinks++
		}
	}
	return nil
}

// program returns the loaded program that serves pt, registering what it
// needs to know of pt's function (CheckFunc, LogFunc).
func (p *Probes) program(pt Point) (*ebpf.Program, error) {
	var prog *ebpf.Program
	switch pt.Program {
	case WithValue:
		prog = p.objs.WithValue
	case ContextArg0:
		prog = p.objs.CtxArg0
	case CheckFunc, LogFunc:
		prog = p.objs.CheckFunc
		if pt.Program == LogFunc {
			prog = p.objs.LogFunc
		}
		// The probe sees RIP at the probed instruction; key both
		// readings kernels have given for it.
		for _, a := range []uint64{pt.Address, pt.Address + 1} {
			if err := p.objs.CheckFuncs.Put(a, uint32(pt.ContextArg)); err != nil {
				return nil, fmt.Errorf("register %s function %s: %w", pt.Program, pt.Func, err)
			}
		}
	case SlogHandle:
		prog = p.objs.SlogHandle
	case Spawn:
		prog = p.objs.Spawn
	case TimeAfterFunc:
		prog = p.objs.TimeAfterFunc
	case ContextAfterFunc:
		prog = p.objs.ContextAfterFunc
	case ChanSend:
		prog = p.objs.ChanSend
	case ChanRecv:
		prog = p.objs.ChanRecv
	case SelectEnter:
		prog = p.objs.SelectEnter
	case SelectResult:
		prog = p.objs.SelectResult
		if pt.Stepped {
			prog = p.objs.SelectResultStepped
		}
	default:
		return nil, fmt.Errorf("attach %s: unknown program %d", pt.Func, pt.Program)
	}
	if prog == nil {
		return nil, fmt.Errorf("attach %s: eBPF program %s was not loaded (Config.Programs)", pt.Func, pt.Program)
	}
	return prog, nil
}

// link places prog's uprobes at points: one link per point, or one
// uprobe_multi link for all of them. With the process id the kernel plants
// the breakpoints in that process alone: others running the same file pay
// no trap. A shared program's probes go into every process of the file.
func (p *Probes) link(prog *ebpf.Program, points []Point) error {
	pt := points[0]
	var l link.Link
	var err error
	if p.multi {
		addrs := make([]uint64, len(points))
		for i, q := range points {
			addrs[i] = q.FileOffset
		}
		l, err = p.ex.UprobeMulti(nil, prog, &link.UprobeMultiOptions{Addresses: addrs, PID: uint32(p.pid)})
	} else {
		l, err = p.ex.Uprobe("", prog, &link.UprobeOptions{Address: pt.FileOffset, PID: p.pid})
	}
	where := fmt.Sprintf("%s at %#x", pt.Func, pt.FileOffset)
	if len(points) > 1 {
		where = fmt.Sprintf("%d places (%s at %#x first)", len(points), pt.Func, pt.FileOffset)
	}
	if errors.Is(err, os.ErrPermission) {
		// CAP_PERFMON sufficed from Linux 5.8 until the 2025 fix
		// "perf: Require CAP_SYS_ADMIN for uprobes", backported to
		// the stable kernels (Debian's 5.10 and 6.12 have it).
		return fmt.Errorf("attach uprobe %s to %s: %w: this kernel lets only CAP_SYS_ADMIN create uprobes", pt.Program, pt.Func, err)
	}
	if err != nil {
		return fmt.Errorf("attach uprobe %s to %s: %w", pt.Program, where, err)
	}
	p.links = append(p.links, l)
	return nil
}

// Stats are the program's counters, summed over CPUs.
type Stats struct {
	EventsLost uint64 // records the ring buffer had no room for
	ReadFaults uint64 // target memory the probes could not read
	WalkDeep   uint64 // context chains longer than the probes follow
	Hits       uint64 // probe hits
	StateFull  uint64 // goroutine states that could not be stored
	// Goroutine states created, and deleted by the program (out of scope).
	StatesCreated, StatesDeleted uint64
}

// Hits reads the probe hit counter alone, for the overhead budget's
// frequent checks: one read of the program's global data. The counter
// (hits in bpf/ctxwatch.c) has one slot per CPU, hitStride words apart so
// that CPUs do not share a cache line; its size is the variable's own.
func (p *Probes) Hits() (uint64, error) {
	return sumHits(p.objs.Hits, "probe hits")
}

// SteppedHits reads how many of the hits were of probes the kernel
// single-steps (hits_stepped in bpf/ctxwatch.c: the log record probe),
// which cost several times an emulated one. Read it before Hits: the
// hits then include at least these.
func (p *Probes) SteppedHits() (uint64, error) {
	return sumHits(p.objs.HitsStepped, "single-stepped probe hits")
}

// RunTime is how long the loaded programs have run so far, as the kernel
// measures it while run-time statistics are on (EnableRunTimeStats); zero
// otherwise. The hits' cost, measured with an empty program, is the trap
// alone: this is the programs' own work, which the target pays too.
func (p *Probes) RunTime() (time.Duration, error) {
	var sum time.Duration
	progs := reflect.ValueOf(&p.objs.CtxwatchPrograms).Elem()
	for i := 0; i < progs.NumField(); i++ {
		prog, _ := progs.Field(i).Interface().(*ebpf.Program)
		if prog == nil {
			continue
		}
		st, err := prog.Stats()
		if err != nil {
			return 0, fmt.Errorf("read the run time of eBPF program %s: %w", progs.Type().Field(i).Tag.Get("ebpf"), err)
		}
		sum += st.Runtime
	}
	return sum, nil
}

// EnableRunTimeStats turns on the kernel's run-time statistics of eBPF
// programs (Linux 5.8) until the returned Closer is closed. While on,
// every eBPF program of the machine pays two clock reads per run (some
// tens of nanoseconds), not only ctxwatch's.
func EnableRunTimeStats() (io.Closer, error) {
	c, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return nil, fmt.Errorf("enable eBPF run-time statistics: %w", err)
	}
	return c, nil
}

// sumHits sums a per-CPU hit counter laid out as hits.
func sumHits(v *ebpf.Variable, what string) (uint64, error) {
	hits := make([]uint64, v.Size()/8)
	if err := v.Get(hits); err != nil {
		return 0, fmt.Errorf("read %s: %w", what, err)
	}
	var n uint64
	for i := 0; i < len(hits); i += hitStride {
		n += hits[i]
	}
	return n, nil
}

// hitStride is the distance, in counters, between two CPUs' slots of hits.
const hitStride = 8

// Stats reads the program's counters.
func (p *Probes) Stats() (Stats, error) {
	var s Stats
	var err error
	if s.Hits, err = p.Hits(); err != nil {
		return s, err
	}
	for idx, d := range map[bpf.CtxwatchStat]*uint64{
		bpf.CtxwatchStatSTAT_EVENTS_LOST:   &s.EventsLost,
		bpf.CtxwatchStatSTAT_READ_FAULT:    &s.ReadFaults,
		bpf.CtxwatchStatSTAT_WALK_DEEP:     &s.WalkDeep,
		bpf.CtxwatchStatSTAT_STATE_FULL:    &s.StateFull,
		bpf.CtxwatchStatSTAT_STATE_NEW:     &s.StatesCreated,
		bpf.CtxwatchStatSTAT_STATE_DELETED: &s.StatesDeleted,
	} {
		var per []uint64
		if err := p.objs.Stats.Lookup(uint32(idx), &per); err != nil {
			return s, fmt.Errorf("read counter %d: %w", idx, err)
		}
		for _, v := range per {
			*d += v
		}
	}
	return s, nil
}

// Detach removes the uprobes; the program and maps stay readable.
func (p *Probes) Detach() error {
	// The spawn probes first (they are the last links, see attach): no
	// goroutine is taken in while the probes of its checks come out.
	spawn := len(p.links) - min(p.spawnLinks, len(p.links))
	err := closeLinks(p.links[spawn:])
	err = errors.Join(err, closeLinks(p.links[:spawn]))
	p.links = nil
	return err
}

// closeLinks closes links in parallel: removing a uprobe waits for an RCU
// grace period (tens of ms each), and the target keeps paying for the
// probes still in meanwhile.
func closeLinks(links []link.Link) error {
	errs := make([]error, len(links))
	var wg sync.WaitGroup
	for i, l := range links {
		wg.Go(func() { errs[i] = l.Close() })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close detaches and unloads.
func (p *Probes) Close() error {
	return errors.Join(p.Detach(), p.objs.Close())
}
