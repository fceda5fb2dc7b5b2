package agent

import (
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ctxwatch/ctxwatch/internal/budget"
	"github.com/ctxwatch/ctxwatch/internal/findings"
	"github.com/ctxwatch/ctxwatch/internal/uprobe"
)

// overheadBudget is --overhead-budget. What a probe hit costs on this
// machine is measured in the background (it takes some 150 ms of a CPU,
// more on a loaded machine), and a process's duty cycle starts once it is
// known. When it starts is the caller's choice (begin): with --pid, after
// the probes are in, so that it does not compete with the attach for the
// CPUs; with a command, from start-up, while the stopped process waits.
type overheadBudget struct {
	fraction float64 // 0.01 for 1%
	logf     func(format string, args ...any)
	once     sync.Once
	ready    chan struct{}
	cost     uprobe.HitCost // once ready is closed
	err      error          // once ready is closed
	// runTimeErr says why the programs' run time is not charged (nil: it
	// is); told once, when a first process is watched (toldOnce).
	runTimeErr error
	toldOnce   sync.Once
}

// tellRunTime warns, once, that the programs' run time is not charged.
func (b *overheadBudget) tellRunTime(warn func(format string, args ...any)) {
	if b.runTimeErr != nil {
		b.toldOnce.Do(func() {
			warn("overhead budget: the probes' run time is not charged, only their traps: %v", b.runTimeErr)
		})
	}
}

// newOverheadBudget is a budget of pct percent, its measurement not begun;
// logf reports the measurement.
func newOverheadBudget(pct float64, logf func(format string, args ...any)) *overheadBudget {
	return &overheadBudget{fraction: pct / 100, logf: logf, ready: make(chan struct{})}
}

// begin starts measuring the cost of a hit, once.
func (b *overheadBudget) begin() {
	b.once.Do(func() {
		go func() {
			defer close(b.ready)
			t0 := time.Now()
			hc, err := uprobe.MeasureHitCost(uprobe.MultiLinks())
			if err != nil {
				b.err = fmt.Errorf("measure the cost of a probe hit for --overhead-budget: %w", err)
				return
			}
			b.cost = hc
			b.logf("overhead budget %g%%: a probe hit costs %s emulated, %s single-stepped, a probe's attach %s and detach %s (measured in %s); "+
				"hits are charged the emulated cost, or the single-stepped one in a process with a single-stepped probe",
				b.fraction*100, hc.Emulated, hc.Stepped, hc.Attach, hc.Detach, time.Since(t0).Round(time.Millisecond))
		}()
	})
}

// wait waits for the measurement, begun if it was not.
func (b *overheadBudget) wait() error {
	b.begin()
	<-b.ready
	return b.err
}

// hitCost is what one hit is charged in a process whose probes are placed
// at points. The hit counter does not tell one probe from another, so when
// any probe is single-stepped (a fallback: a RET, a function's first
// instruction) every hit is charged at that dearer cost: a budget must not
// be exceeded by guessing low. A single-stepped probe whose hits are
// counted apart (the log record probe) is charged apart: see
// steppedExtra.
func (b *overheadBudget) hitCost(points []uprobe.Point) time.Duration {
	for _, p := range points {
		if p.Stepped && !p.CountedApart {
			return max(b.cost.Stepped, b.cost.Emulated)
		}
	}
	return b.cost.Emulated
}

// steppedExtra is what a hit counted apart (single-stepped) costs beyond
// cost, the charge of every hit, as a multiple of cost: each such hit is
// charged 1+steppedExtra hits.
func (b *overheadBudget) steppedExtra(cost time.Duration) float64 {
	if cost <= 0 || b.cost.Stepped <= cost {
		return 0
	}
	return float64(b.cost.Stepped-cost) / float64(cost)
}

// dutyCycle attaches and detaches one process's probes to keep them under
// the budget.
type dutyCycle struct {
	ctl    *budget.Controller
	probes *uprobe.Probes
	cpus   int
	cost   time.Duration // per hit
	cycle  time.Duration // per detach and re-attach
	// extra is what a hit counted apart (SteppedHits) is charged beyond
	// cost, in hits; charged is the last count given to ctl, which never
	// goes back.
	extra   float64
	charged uint64
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

// startDutyCycle starts duty-cycling probes for process pid, attached
// since attached: the hits counted since then are charged.
func startDutyCycle(b *overheadBudget, pid int, probes *uprobe.Probes, points []uprobe.Point, attached time.Time, onErr func(error)) (*dutyCycle, error) {
	if err := b.wait(); err != nil {
		return nil, err
	}
	cpus := targetCPUs(pid)
	cost := b.hitCost(points)
	n := time.Duration(len(points))
	ctl, err := budget.New(budget.Config{Budget: b.fraction, CPUs: cpus, HitCost: cost,
		DetachCost: n * b.cost.Detach, AttachCost: n * b.cost.Attach}, attached, 0)
	if err != nil {
		return nil, err
	}
	d := &dutyCycle{ctl: ctl, probes: probes, cpus: cpus, cost: cost, cycle: n * (b.cost.Detach + b.cost.Attach),
		extra: b.steppedExtra(cost), stop: make(chan struct{}), done: make(chan struct{})}
	go d.run(onErr)
	return d, nil
}

func (d *dutyCycle) run(onErr func(error)) {
	defer close(d.done)
	// The controller says when to look next: soon while attached to a busy
	// target (about when the budget runs out), later while detached.
	t := time.NewTimer(d.ctl.Next())
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			d.update(false, onErr) // account for the last stretch only
			return
		case <-t.C:
			d.update(true, onErr)
			t.Reset(d.ctl.Next())
		}
	}
}

func (d *dutyCycle) update(apply bool, onErr func(error)) {
	stepped, err := d.probes.SteppedHits() // first: hits then include them
	if err != nil {
		onErr(err)
		return
	}
	hits, err := d.probes.Hits()
	if err != nil {
		onErr(err)
		return
	}
	run, err := d.probes.RunTime()
	if err != nil {
		onErr(err)
		return
	}
	d.charged = max(d.charged, chargedHits(hits, stepped, d.extra))
	attach := d.ctl.Update(time.Now(), d.charged, run)
	switch {
	case !apply:
	case attach && !d.probes.Attached():
		// Reattach forgets the goroutine states that went stale meanwhile.
		err = d.probes.Reattach()
	case !attach && d.probes.Attached():
		err = d.probes.Detach()
	}
	if err != nil {
		onErr(err)
	}
}

// chargedHits is the number of hits at the budget's cost per hit that hits,
// stepped of them single-stepped and each extra hits dearer, amount to.
func chargedHits(hits, stepped uint64, extra float64) uint64 {
	return hits + uint64(math.Round(float64(stepped)*extra))
}

// halt stops the duty cycle, leaving the probes as they are; it returns
// once no attach or detach is under way. Safe to call more than once.
func (d *dutyCycle) halt() {
	if d == nil {
		return
	}
	d.once.Do(func() { close(d.stop) })
	<-d.done
}

// account fills the budget part of a summary.
func (d *dutyCycle) account(sum *findings.Summary) {
	if d == nil {
		sum.SampledFraction = 1
		return
	}
	st := d.ctl.Stats()
	sum.SampledFraction = st.SampledFraction
	sum.Budget = &findings.BudgetStats{
		Budget:      d.ctl.Budget(),
		Overhead:    st.Overhead,
		HitCostNS:   float64(d.cost.Nanoseconds()),
		CycleCostNS: float64(d.cycle.Nanoseconds()),
		CPUs:        d.cpus,
		Detaches:    st.Detaches,
	}
}

// targetCPUs is the number of CPUs process pid may run on.
func targetCPUs(pid int) int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(pid, &set); err == nil && set.Count() > 0 {
		return set.Count()
	}
	return 1
}
