// Package budget keeps what ctxwatch's probes cost a process under an
// overhead budget by duty-cycling them: attached while the budget allows,
// detached while it refills.
//
// Definitions (see docs/performance.md):
//
//   - cost: probe hits × the cost of one hit, measured at start-up on this
//     machine (uprobe.MeasureHitCost). It is time the target spends trapped
//     in the kernel instead of running its own code. Every detach and every
//     re-attach is charged too (Config.DetachCost, AttachCost): the kernel
//     rewrites the target's text under its memory map lock. And the time
//     the probes' eBPF programs ran, which the kernel measures (Update's
//     run): the hit cost, measured with an empty program, is the trap's.
//   - overhead: cost / (wall time × CPUs of the target), where CPUs is the
//     number of CPUs the target may run on. A budget of 1% on a 2-CPU
//     machine allows 20 ms of probe time per second of wall time.
//   - sampled fraction: the share of wall time, since watching began, during
//     which the probes were attached.
//
// The controller is a token bucket of probe time: it fills at budget × CPUs
// seconds per second, up to budget × CPUs × Window, and every tick while
// attached drains the cost of the hits counted since the last tick. When
// the bucket is empty (or in debt: a tick may cost more than was left) the
// probes are detached; they come back when it is full again. The average
// overhead over any long run is therefore at most the budget, plus at most
// one window's worth; a burst costs at most one full bucket plus one tick.
// Ticks are not regular: Next says when the next one is due, from the hit
// rate last seen while attached, so that an attached window ends about when
// the bucket runs dry rather than at a fixed tick, and a detached one when
// it is full again.
//
// The package is pure Go: the caller reads the hit counter and attaches or
// detaches; tests drive it with a fake clock.
package budget

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// DefaultWindow is the default Config.Window.
const DefaultWindow = time.Second

// Bounds of Next: the first tick after attaching, with no hit rate known
// yet, is MinTick; no tick is further apart than MaxTick while attached to
// a target that hits its probes, nor than the time a burst would take to
// empty the bucket while it does not.
const (
	MinTick = 2 * time.Millisecond
	MaxTick = 10 * time.Millisecond
)

// Config is what a Controller needs to know.
type Config struct {
	// Budget is the overhead allowed, as a fraction (0.01 for 1%).
	Budget float64
	// CPUs is the number of CPUs the target may run on (at least 1).
	CPUs int
	// HitCost is what one probe hit costs the target.
	HitCost time.Duration
	// Window sets the bucket size: Budget × CPUs × Window of probe time.
	// Zero means DefaultWindow. It is widened so that a duty cycle (a
	// detach and a re-attach) costs at most CycleShare of the bucket: a
	// budget that is refilled by tiny windows would be spent on cycling.
	Window time.Duration
	// DetachCost and AttachCost are what taking all the probes out and
	// putting them back costs the target, charged at each detach and each
	// re-attach.
	DetachCost, AttachCost time.Duration
}

// CycleShare is the largest share of the bucket one duty cycle may cost.
const CycleShare = 0.1

// ErrConfig means a Config cannot be used.
var ErrConfig = errors.New("invalid overhead budget")

// Controller decides, tick by tick, whether the probes of one process are
// attached. Safe for concurrent use.
type Controller struct {
	cfg      Config
	rate     float64 // seconds of probe time earned per second of wall time
	capacity float64 // seconds of probe time the bucket holds

	mu          sync.Mutex
	tokens      float64 // seconds of probe time left; negative is debt
	attached    bool
	start, last time.Time
	lastHits    uint64
	lastRun     time.Duration
	onTime      time.Duration // attached time, up to last
	cost        float64       // estimated seconds of probe time so far
	detaches    int
	burn        float64 // seconds of probe time per second in the last attached tick
	rateKnown   bool
}

// New returns a Controller whose probes are attached as of now, with hits
// the process's hit counter at that moment and a full bucket.
func New(cfg Config, now time.Time, hits uint64) (*Controller, error) {
	if cfg.Window == 0 {
		cfg.Window = DefaultWindow
	}
	switch {
	case !(cfg.Budget > 0 && cfg.Budget <= 1):
		return nil, fmt.Errorf("%w: budget %g, want a fraction in (0, 1]", ErrConfig, cfg.Budget)
	case cfg.CPUs < 1:
		return nil, fmt.Errorf("%w: %d CPUs", ErrConfig, cfg.CPUs)
	case cfg.HitCost <= 0:
		return nil, fmt.Errorf("%w: hit cost %s", ErrConfig, cfg.HitCost)
	case cfg.Window < 0:
		return nil, fmt.Errorf("%w: window %s", ErrConfig, cfg.Window)
	case cfg.DetachCost < 0 || cfg.AttachCost < 0:
		return nil, fmt.Errorf("%w: cycle cost %s + %s", ErrConfig, cfg.DetachCost, cfg.AttachCost)
	}
	rate := cfg.Budget * float64(cfg.CPUs)
	if cycle := (cfg.DetachCost + cfg.AttachCost).Seconds(); cycle > 0 {
		// capacity = rate × Window ≥ cycle / CycleShare
		cfg.Window = max(cfg.Window, time.Duration(cycle/CycleShare/rate*float64(time.Second)))
	}
	c := &Controller{
		cfg:      cfg,
		rate:     rate,
		capacity: rate * cfg.Window.Seconds(),
		attached: true,
		start:    now,
		last:     now,
		lastHits: hits,
	}
	c.tokens = c.capacity
	return c, nil
}

// Update accounts for the time since the last call, the hits counted
// since (hits is the process's cumulative hit counter) and the run time
// of the probes' programs since (run is cumulative too; zero when the
// kernel does not measure it), and returns whether the probes should be
// attached from now on. The caller attaches or detaches accordingly; a
// change takes effect at now.
func (c *Controller) Update(now time.Time, hits uint64, run time.Duration) (attach bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	dt := now.Sub(c.last)
	if dt < 0 {
		dt = 0
	}
	var spent float64
	if hits > c.lastHits {
		spent = float64(hits-c.lastHits) * c.cfg.HitCost.Seconds()
	}
	if run > c.lastRun {
		spent += (run - c.lastRun).Seconds()
	}
	c.lastHits, c.lastRun = hits, max(c.lastRun, run)
	c.cost += spent
	if c.attached {
		c.onTime += dt
		if dt > 0 {
			c.burn = spent / dt.Seconds()
			c.rateKnown = true
		}
	}
	c.last = now
	c.tokens += c.rate*dt.Seconds() - spent
	if c.tokens > c.capacity {
		c.tokens = c.capacity
	}
	switch {
	case c.attached && c.tokens <= 0:
		c.attached = false
		c.detaches++
		c.charge(c.cfg.DetachCost)
	case !c.attached && c.tokens >= c.capacity:
		c.attached = true
		c.charge(c.cfg.AttachCost)
	}
	return c.attached
}

// charge spends d of probe time that is no hit's (a detach, a re-attach).
func (c *Controller) charge(d time.Duration) {
	c.cost += d.Seconds()
	c.tokens -= d.Seconds()
}

// Window returns the bucket's window, as widened for the cycle cost.
func (c *Controller) Window() time.Duration { return c.cfg.Window }

// Next returns how long after the last Update the next one is due.
func (c *Controller) Next() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var secs float64
	if c.attached {
		if !c.rateKnown {
			return MinTick
		}
		burn := c.burn // probe seconds per second
		if burn <= 0 {
			// Idle: look as often as a burst on every CPU would take to
			// empty the bucket (Budget × Window), at least every MaxTick.
			// An agent with many idle targets (ctxwatch node) must not
			// spend more than the budget it keeps.
			return max(MaxTick, time.Duration(c.capacity/float64(c.cfg.CPUs)*float64(time.Second)))
		}
		secs = c.tokens / burn
		return clamp(time.Duration(secs*float64(time.Second)), MinTick, MaxTick)
	}
	secs = (c.capacity - c.tokens) / c.rate
	return max(time.Duration(secs*float64(time.Second)), MinTick)
}

func clamp(d, lo, hi time.Duration) time.Duration { return min(max(d, lo), hi) }

// Attached reports the state decided by the last Update.
func (c *Controller) Attached() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.attached
}

// Stats is an account of the budget so far.
type Stats struct {
	// SampledFraction is the share of wall time with the probes attached,
	// in [0, 1]; 1 before any time has passed.
	SampledFraction float64
	// Overhead is the estimated cost / (wall time × CPUs).
	Overhead float64
	// Detaches counts the times the probes were taken out.
	Detaches int
}

// Stats returns the account up to the last Update.
func (c *Controller) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Stats{SampledFraction: 1, Detaches: c.detaches}
	if wall := c.last.Sub(c.start); wall > 0 {
		s.SampledFraction = min(1, c.onTime.Seconds()/wall.Seconds())
		s.Overhead = c.cost / (wall.Seconds() * float64(c.cfg.CPUs))
	}
	return s
}

// Budget returns the configured budget, a fraction.
func (c *Controller) Budget() float64 { return c.cfg.Budget }
