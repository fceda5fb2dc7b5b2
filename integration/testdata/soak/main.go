// Command soak is a target that ctxwatch must never harm. Goroutines
// (-workers of them at a time, each replaced when it exits after a few
// hundred units of work) make the calls ctxwatch probes (context.WithValue,
// WithCancel, WithTimeout, WithDeadline, and goroutine spawns), inside and
// outside traces, from deep recursion whose frames make their stacks grow
// (Go copies them while the probes read frames), under GC pressure, with
// tight loops that only asynchronous preemption interrupts and with
// panics recovered across probed calls.
//
// It checks its own results: every value read back through ctx.Value, the
// checksums of the recursion and of the tight loops (against a closed
// form), the recovered panics, the objects kept alive across collections,
// and the counts. On any mismatch it says what and exits 1.
//
// It stops after -calls probed calls, or with -until-eof when its standard
// input is closed, and prints
//
//	soak: calls C units U kept K lost L traced-kept TK traced-lost TL panics P preempt-loops T ok
//
// Spawns: K goroutines are started with the unit's context, L with
// context.Background(); TK and TL of them in units that carry a trace:
// ctxwatch should count TK propagated and TL lost-at-spawn, at the marked
// lines.
//
// ctxwatch-flags: --trace-key type=main.traceKey
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

type (
	traceKey struct{}
	levelKey struct{}
	panicKey struct{}
)

// stats are counted per worker and added up when it exits.
type stats struct {
	calls, units, kept, lost, panics, loops uint64
	// Spawns in traced units: what ctxwatch counts at the spawn lines.
	tracedKept, tracedLost uint64
}

var (
	total   stats
	totalMu sync.Mutex
	failed  atomic.Bool
	// done is set once the soak should stop.
	done atomic.Bool
	// made counts the probed calls made so far.
	made atomic.Uint64
)

func fail(format string, args ...any) {
	if failed.CompareAndSwap(false, true) {
		fmt.Fprintf(os.Stderr, "soak: FAIL: "+format+"\n", args...)
	}
	done.Store(true)
}

// worker runs units of work until it has done n of them or the soak ends.
type worker struct {
	id  int
	rng *rand.Rand
	st  stats
	// live keeps allocations across collections; each is checked later.
	live [64]*blob
	// prev keeps the last unit's root context alive through the next
	// unit. ctxwatch tells that a trace went out of scope by reading the
	// canceled context that brought it: were that context freed and its
	// memory reused by a live one (which this GC pressure makes happen
	// about once in 2000 units), the old trace would look in scope (see
	// Limits in README.md).
	prev context.Context
}

type blob struct {
	seed uint64
	data []uint64
}

func newBlob(seed uint64, n int) *blob {
	b := &blob{seed: seed, data: make([]uint64, n)}
	x := seed
	for i := range b.data {
		x = x*6364136223846793005 + 1442695040888963407
		b.data[i] = x
	}
	return b
}

func (b *blob) check() bool {
	x := b.seed
	for _, v := range b.data {
		x = x*6364136223846793005 + 1442695040888963407
		if v != x {
			return false
		}
	}
	return true
}

func (w *worker) run(units int, limit uint64) {
	for range units {
		if done.Load() {
			return
		}
		before := w.st.calls
		w.unit()
		if made.Add(w.st.calls-before) >= limit {
			done.Store(true)
		}
	}
}

// unit is one unit of work: a cancelable root (so that the trace goes out
// of scope when the unit ends), a trace in every other unit, a deep
// recursion of checks, one spawn, one in 16 a panic, one in 2048 a tight
// loop.
func (w *worker) unit() {
	w.st.units++
	n := w.st.units
	root, cancel := context.WithCancel(context.Background())
	w.st.calls++
	defer cancel()
	defer func() { w.prev = root }()
	ctx := root
	var trace string
	if n%2 == 0 {
		trace = fmt.Sprintf("%016x%016x", w.id+1, n)
		ctx = context.WithValue(root, traceKey{}, trace)
		w.st.calls++
	}
	depth := 64 + w.rng.IntN(256)
	want := uint64(depth)*(uint64(depth)+1)/2 + uint64(depth) + 1
	if got := w.descend(ctx, ctx, trace, depth, n%16 == 0); got != want {
		fail("worker %d unit %d: recursion checksum %d, want %d", w.id, n, got, want)
	}
	// GC pressure: garbage, and a few objects that live on.
	slot := w.rng.IntN(len(w.live))
	if b := w.live[slot]; b != nil && !b.check() {
		fail("worker %d: object of seed %d changed", w.id, b.seed)
	}
	w.live[slot] = newBlob(w.rng.Uint64(), 16+w.rng.IntN(128))
	_ = make([]byte, 1024+w.rng.IntN(8192))
	if w.rng.IntN(2048) == 0 {
		w.tightLoop()
	}
}

// descend recurses depth levels with a frame of a few hundred bytes each:
// a fresh goroutine's stack grows, and is copied, several times on the way
// down. Every 4th level makes a probed check on a context derived from
// the one above, and every 64th starts again from base, so that chains stay
// shorter than ctxwatch follows (24); the values are read back on the way
// up. At the bottom it spawns a goroutine, and with panics, makes
// one that is recovered higher up.
//
//go:noinline
func (w *worker) descend(base, ctx context.Context, trace string, depth int, panics bool) (sum uint64) {
	if depth == 0 {
		w.spawn(ctx, trace)
		if panics {
			w.panicky(ctx)
		}
		return 1
	}
	var pad [256]byte // grows the stack
	pad[depth%len(pad)] = byte(depth)
	if depth%64 == 0 {
		ctx = base
	}
	if depth%4 == 0 {
		var cancel context.CancelFunc
		switch (depth / 4) % 4 {
		case 0:
			ctx = context.WithValue(ctx, levelKey{}, depth)
		case 1:
			ctx, cancel = context.WithCancel(ctx)
		case 2:
			ctx, cancel = context.WithTimeout(ctx, time.Hour)
		case 3:
			ctx, cancel = context.WithDeadline(ctx, time.Now().Add(time.Hour))
		}
		w.st.calls++
		if cancel != nil {
			defer cancel()
		}
	}
	sum = w.descend(base, ctx, trace, depth-1, panics)
	if depth%4 == 0 {
		if got := value(ctx, traceKey{}); got != trace {
			fail("worker %d depth %d: trace %q read back, want %q", w.id, depth, got, trace)
		}
		if got, _ := ctx.Value(levelKey{}).(int); depth%16 == 0 && got != depth {
			fail("worker %d depth %d: level %d read back", w.id, depth, got)
		}
		if ctx.Err() != nil {
			fail("worker %d depth %d: context done: %v", w.id, depth, ctx.Err())
		}
	}
	return sum + uint64(depth) + uint64(pad[depth%len(pad)]) - uint64(byte(depth)) + 1
}

func value(ctx context.Context, key any) string {
	s, _ := ctx.Value(key).(string)
	return s
}

// spawn starts one goroutine and waits for it: with the unit's context
// (kept) three times in four, else with Background (lost).
func (w *worker) spawn(ctx context.Context, trace string) {
	res := make(chan string, 1)
	if w.rng.IntN(4) != 0 {
		go child(ctx, res) // want:spawn propagated
		w.st.kept++
		if trace != "" {
			w.st.tracedKept++
		}
	} else {
		go child(context.Background(), res) // want:spawn lost-at-spawn
		w.st.lost++
		if trace != "" {
			w.st.tracedLost++
		}
		trace = ""
	}
	w.st.calls += 2 // the spawn and the child's WithCancel
	if got := <-res; got != trace {
		fail("worker %d: child read trace %q, want %q", w.id, got, trace)
	}
}

func child(ctx context.Context, res chan<- string) {
	c, cancel := context.WithCancel(ctx) // want:site lost-at-spawn
	defer cancel()
	res <- value(c, traceKey{})
}

type soakPanic struct{ n uint64 }

// panicky makes a probed call and panics with its value; the deferred
// recover checks that the panic that arrives is this one.
func (w *worker) panicky(ctx context.Context) {
	n := w.st.units
	defer func() {
		r := recover()
		p, ok := r.(soakPanic)
		if !ok || p.n != n {
			fail("worker %d: recovered %v, want soakPanic{%d}", w.id, r, n)
		}
		w.st.panics++
	}()
	c := context.WithValue(ctx, panicKey{}, n)
	w.st.calls++
	if got, _ := c.Value(panicKey{}).(uint64); got != n {
		fail("worker %d: panic value %d read back, want %d", w.id, got, n)
	}
	panic(soakPanic{n})
}

// tightLoop runs an LCG for over 10 ms without a call: only asynchronous
// preemption (a signal, from sysmon or the GC) lets other goroutines onto
// this thread. The result is checked against the closed form.
func (w *worker) tightLoop() {
	const a, c = 6364136223846793005, 1442695040888963407
	n := uint64(15_000_000 + w.rng.IntN(5_000_000))
	seed := w.rng.Uint64()
	x := seed
	for i := uint64(0); i < n; i++ {
		x = x*a + c
	}
	if want := lcgJump(seed, a, c, n); x != want {
		fail("worker %d: tight loop of %d steps gave %#x, want %#x", w.id, n, x, want)
	}
	w.st.loops++
}

// lcgJump computes n steps of x = a*x + c by composing the affine map with
// itself (square and multiply), independently of the loop.
func lcgJump(x, a, c, n uint64) uint64 {
	accA, accC := uint64(1), uint64(0)
	for n > 0 {
		if n&1 == 1 {
			accA, accC = accA*a, accC*a+c
		}
		a, c = a*a, c*a+c
		n >>= 1
	}
	return accA*x + accC
}

func main() {
	calls := flag.Uint64("calls", 1_000_000, "stop after this many probed calls")
	untilEOF := flag.Bool("until-eof", false, "run until standard input is closed, however many calls")
	workers := flag.Int("workers", 64, "goroutines working at a time")
	units := flag.Int("units", 300, "units of work a worker does before it exits and is replaced")
	flag.Parse()
	debug.SetGCPercent(20)

	fmt.Println("ready")
	if *untilEOF {
		go func() {
			io.Copy(io.Discard, os.Stdin)
			done.Store(true)
		}()
	}
	limit := *calls
	if *untilEOF {
		limit = math.MaxUint64
	}
	var wg sync.WaitGroup
	slots := make(chan struct{}, *workers)
	var started uint64
	start := time.Now()
	for id := 0; !done.Load(); id++ {
		slots <- struct{}{}
		wg.Add(1)
		started++
		go func() { // goroutines exit and are replaced
			defer wg.Done()
			defer func() { <-slots }()
			w := &worker{id: id, rng: rand.New(rand.NewPCG(uint64(id), 42))}
			w.run(*units, limit)
			totalMu.Lock()
			total.calls += w.st.calls
			total.units += w.st.units
			total.kept += w.st.kept
			total.lost += w.st.lost
			total.tracedKept += w.st.tracedKept
			total.tracedLost += w.st.tracedLost
			total.panics += w.st.panics
			total.loops += w.st.loops
			totalMu.Unlock()
		}()
	}
	wg.Wait()
	if err := checkTotals(started); err != nil {
		fail("%v", err)
	}
	fmt.Fprintf(os.Stderr, "soak: %d workers in %.1fs\n", started, time.Since(start).Seconds())
	if failed.Load() {
		os.Exit(1)
	}
	fmt.Printf("soak: calls %d units %d kept %d lost %d traced-kept %d traced-lost %d panics %d preempt-loops %d ok\n",
		total.calls, total.units, total.kept, total.lost, total.tracedKept, total.tracedLost, total.panics, total.loops)
}

// checkTotals checks the counts against each other: every unit spawned
// once, one in 16 panicked, one in 64 looped.
func checkTotals(workers uint64) error {
	t := total
	var errs []error
	if t.kept+t.lost != t.units {
		errs = append(errs, fmt.Errorf("%d spawns for %d units", t.kept+t.lost, t.units))
	}
	if t.units == 0 || workers == 0 {
		errs = append(errs, fmt.Errorf("no work done"))
	}
	return errors.Join(errs...)
}
