package budget

import (
	"errors"
	"math"
	"testing"
	"time"
)

const tick = 50 * time.Millisecond

// sim drives a Controller with a fake clock: the target makes hitsPerSec
// probe hits per second of wall time while the probes are attached, and
// none while they are not (a detached uprobe does not fire).
type sim struct {
	c     *Controller
	now   time.Time
	hits  uint64
	frac  float64       // fractional hits carried between ticks
	late  time.Duration // added to every tick
	ticks int
	// runPerHit is how long the probe's program runs per hit, which the
	// kernel adds up (Update's run).
	runPerHit time.Duration
}

func newSim(t *testing.T, cfg Config) *sim {
	t.Helper()
	now := time.Unix(1000, 0)
	c, err := New(cfg, now, 0)
	if err != nil {
		t.Fatal(err)
	}
	return &sim{c: c, now: now}
}

// run advances the clock by d, in ticks as Next asks (plus lateness, as
// on a busy machine), at hitsPerSec while attached.
func (s *sim) run(d time.Duration, hitsPerSec float64) {
	for end := s.now.Add(d); s.now.Before(end); {
		next := s.c.Next() + s.late
		if s.c.Attached() {
			s.frac += hitsPerSec * next.Seconds()
			whole := math.Floor(s.frac)
			s.hits += uint64(whole)
			s.frac -= whole
		}
		s.now = s.now.Add(next)
		s.c.Update(s.now, s.hits, time.Duration(s.hits)*s.runPerHit)
		s.ticks++
	}
}

func TestLightLoadStaysAttached(t *testing.T) {
	// 1000 hits/s at 6 µs is 0.6% of one CPU: under a 1% budget.
	s := newSim(t, Config{Budget: 0.01, CPUs: 1, HitCost: 6 * time.Microsecond})
	s.run(time.Minute, 1000)
	st := s.c.Stats()
	if st.SampledFraction != 1 || st.Detaches != 0 {
		t.Errorf("stats %+v, want sampled fraction 1 and no detach", st)
	}
	if math.Abs(st.Overhead-0.006) > 0.0005 {
		t.Errorf("overhead %.4f, want 0.006", st.Overhead)
	}
}

func TestHotLoadDutyCycles(t *testing.T) {
	for _, tc := range []struct {
		name       string
		cpus       int
		budget     float64
		hitsPerSec float64
	}{
		// A WithValue loop: 6 µs per hit, 100000 hits/s would be 60% of a CPU.
		{"one CPU, 1%", 1, 0.01, 100000},
		{"two CPUs, 1%", 2, 0.01, 100000},
		{"two CPUs, 5%", 2, 0.05, 100000},
		{"just over budget", 1, 0.01, 2000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cost := 6 * time.Microsecond
			s := newSim(t, Config{Budget: tc.budget, CPUs: tc.cpus, HitCost: cost})
			s.run(2*time.Minute, tc.hitsPerSec)
			st := s.c.Stats()
			load := tc.hitsPerSec * cost.Seconds() / float64(tc.cpus) // overhead if always attached
			want := tc.budget / load
			if st.SampledFraction >= 1 || st.Detaches == 0 {
				t.Fatalf("stats %+v: never detached", st)
			}
			// Over two minutes the average is within 10% of the budget.
			if st.Overhead > tc.budget*1.1 {
				t.Errorf("overhead %.4f over budget %.4f", st.Overhead, tc.budget)
			}
			if st.Overhead < tc.budget*0.8 {
				t.Errorf("overhead %.4f wastes budget %.4f", st.Overhead, tc.budget)
			}
			if math.Abs(st.SampledFraction-want) > want*0.2 {
				t.Errorf("sampled fraction %.4f, want about %.4f", st.SampledFraction, want)
			}
			if st.Detaches < 10 {
				t.Errorf("%d detaches in two minutes: probes should come back regularly", st.Detaches)
			}
		})
	}
}

func TestBurstIsBounded(t *testing.T) {
	cfg := Config{Budget: 0.01, CPUs: 1, HitCost: 6 * time.Microsecond}
	s := newSim(t, cfg)
	s.run(10*time.Second, 0) // idle: the bucket is full, not more
	// A burst at 100% of a CPU, for a second: it costs at most the bucket,
	// what the budget earns in that second, and the longest tick (the
	// burst is seen at the first tick after it starts).
	hitsAt := s.hits
	s.run(time.Second, 1/cfg.HitCost.Seconds())
	spent := time.Duration(float64(s.hits-hitsAt) * float64(cfg.HitCost))
	bucket := time.Duration(cfg.Budget * float64(cfg.CPUs) * float64(DefaultWindow))
	if limit := 2*bucket + MaxTick; spent > limit {
		t.Errorf("burst cost %s, want at most %s", spent, limit)
	}
	if s.c.Stats().Detaches == 0 {
		t.Error("never detached in a burst at 100% of a CPU")
	}
}

func TestLateTicks(t *testing.T) {
	// A busy machine runs every tick 5 ms late: the average still holds.
	s := newSim(t, Config{Budget: 0.01, CPUs: 2, HitCost: 20 * time.Microsecond})
	s.late = 5 * time.Millisecond
	s.run(2*time.Minute, 100000)
	if st := s.c.Stats(); st.Overhead > 0.011 || st.Detaches < 10 {
		t.Errorf("stats %+v: want overhead at most 1.1%% and regular cycles", st)
	}
}

func TestIdleTicksAreSparse(t *testing.T) {
	s := newSim(t, Config{Budget: 0.01, CPUs: 1, HitCost: 6 * time.Microsecond})
	s.run(10*time.Second, 0)
	if perSec := float64(s.ticks) / 10; perSec > 1/MaxTick.Seconds()+1 {
		t.Errorf("%.0f ticks per second while idle, want at most %.0f", perSec, 1/MaxTick.Seconds())
	}
}

func TestDebtIsRepaid(t *testing.T) {
	cfg := Config{Budget: 0.01, CPUs: 1, HitCost: 10 * time.Microsecond}
	now := time.Unix(0, 0)
	c, err := New(cfg, now, 0)
	if err != nil {
		t.Fatal(err)
	}
	// One tick costs 100 ms of probe time: 10 s of budget at 1%.
	now = now.Add(tick)
	if c.Update(now, 10000, 0) {
		t.Fatal("attached after spending ten buckets")
	}
	// The full bucket (10 ms) paid for part of it: 90 ms of debt, then
	// 10 ms to fill the bucket again, at 10 ms per second: about 10 s.
	var back time.Duration
	for d := tick; d < time.Minute; d += tick {
		if c.Update(now.Add(d), 10000, 0) {
			back = d
			break
		}
	}
	if back < 9*time.Second || back > 11*time.Second {
		t.Errorf("re-attached after %s, want about 10s", back)
	}
}

func TestSampledFractionBeforeAnyTime(t *testing.T) {
	c, err := New(Config{Budget: 0.05, CPUs: 4, HitCost: time.Microsecond}, time.Unix(0, 0), 42)
	if err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.SampledFraction != 1 || st.Overhead != 0 {
		t.Errorf("stats %+v, want fraction 1, overhead 0", st)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{Budget: 0, CPUs: 1, HitCost: time.Microsecond},
		{Budget: 1.5, CPUs: 1, HitCost: time.Microsecond},
		{Budget: math.NaN(), CPUs: 1, HitCost: time.Microsecond},
		{Budget: 0.01, CPUs: 0, HitCost: time.Microsecond},
		{Budget: 0.01, CPUs: 1, HitCost: 0},
		{Budget: 0.01, CPUs: 1, HitCost: time.Microsecond, Window: -time.Second},
	} {
		if _, err := New(cfg, time.Unix(0, 0), 0); !errors.Is(err, ErrConfig) {
			t.Errorf("New(%+v): error %v, want ErrConfig", cfg, err)
		}
	}
}

// TestIdleTicksScaleWithBudget: idle, a 5% budget is checked 20 times a
// second, not 100 (an agent watching many idle executables pays per
// check), and a burst after idling still costs at most three buckets.
func TestIdleTicksScaleWithBudget(t *testing.T) {
	cfg := Config{Budget: 0.05, CPUs: 2, HitCost: 6 * time.Microsecond}
	s := newSim(t, cfg)
	s.run(10*time.Second, 0)
	if perSec := float64(s.ticks) / 10; perSec > 21 {
		t.Errorf("%.0f ticks per second while idle at 5%%, want at most 20", perSec)
	}
	hitsAt := s.hits
	s.run(time.Second, float64(cfg.CPUs)/cfg.HitCost.Seconds()) // every CPU in the probes
	spent := time.Duration(float64(s.hits-hitsAt) * float64(cfg.HitCost))
	bucket := time.Duration(cfg.Budget * float64(cfg.CPUs) * float64(DefaultWindow))
	if spent > 3*bucket {
		t.Errorf("burst after idling cost %s, want at most %s", spent, 3*bucket)
	}
}

// TestCycleCostCharged: with a detach and a re-attach costing the target
// time of their own, a hot target is charged them at every cycle, on top of
// its hits: the estimate is exactly hits × hit cost + detaches × detach
// cost + re-attaches × attach cost, counted here from the outside, and the
// overhead, cycles included, stays within the budget.
func TestCycleCostCharged(t *testing.T) {
	for _, tc := range []struct {
		name           string
		detach, attach time.Duration
	}{
		{"cheap cycle", 50 * time.Microsecond, 80 * time.Microsecond},
		{"dear cycle", 2 * time.Millisecond, 3 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Budget: 0.01, CPUs: 2, HitCost: 6 * time.Microsecond, DetachCost: tc.detach, AttachCost: tc.attach}
			s := newSim(t, cfg)
			reattaches, was := 0, true
			for end := s.now.Add(2 * time.Minute); s.now.Before(end); {
				s.run(s.c.Next(), 100000) // one tick
				if now := s.c.Attached(); now && !was {
					reattaches++
				}
				was = s.c.Attached()
			}
			st := s.c.Stats()
			if st.Detaches < 10 {
				t.Fatalf("%d detaches: the load should make the probes cycle", st.Detaches)
			}
			wall := s.now.Sub(time.Unix(1000, 0)).Seconds()
			want := (float64(s.hits)*cfg.HitCost.Seconds() + float64(st.Detaches)*tc.detach.Seconds() +
				float64(reattaches)*tc.attach.Seconds()) / (wall * float64(cfg.CPUs))
			if math.Abs(st.Overhead-want) > 1e-9 {
				t.Errorf("estimated overhead %.6f, want %.6f (%d hits, %d detaches, %d re-attaches)", st.Overhead, want, s.hits, st.Detaches, reattaches)
			}
			if st.Overhead > cfg.Budget*1.05 {
				t.Errorf("overhead %.4f with cycles charged, over the %.2f budget", st.Overhead, cfg.Budget)
			}
			hitsOnly := float64(s.hits) * cfg.HitCost.Seconds() / (wall * float64(cfg.CPUs))
			if st.Overhead <= hitsOnly {
				t.Errorf("overhead %.6f is no more than the hits' %.6f: cycles not charged", st.Overhead, hitsOnly)
			}
		})
	}
}

// TestCycleWidensWindow: a cycle costs at most CycleShare of the bucket:
// the window grows with the cycle cost, and is left alone when a cycle is
// cheap.
func TestCycleWidensWindow(t *testing.T) {
	cheap, err := New(Config{Budget: 0.01, CPUs: 2, HitCost: time.Microsecond, DetachCost: 10 * time.Microsecond, AttachCost: 10 * time.Microsecond}, time.Unix(0, 0), 0)
	if err != nil {
		t.Fatal(err)
	}
	if cheap.Window() != DefaultWindow {
		t.Errorf("window %s for a 20 µs cycle, want the default %s", cheap.Window(), DefaultWindow)
	}
	// 1% of 2 CPUs over 1 s is 20 ms of probe time; a 10 ms cycle needs
	// a bucket of 100 ms: a 5 s window.
	dear, err := New(Config{Budget: 0.01, CPUs: 2, HitCost: time.Microsecond, DetachCost: 4 * time.Millisecond, AttachCost: 6 * time.Millisecond}, time.Unix(0, 0), 0)
	if err != nil {
		t.Fatal(err)
	}
	if w := dear.Window(); w < 5*time.Second-time.Millisecond || w > 5*time.Second+time.Millisecond {
		t.Errorf("window %s for a 10 ms cycle at 1%% of 2 CPUs, want 5s", w)
	}
	if _, err := New(Config{Budget: 0.01, CPUs: 1, HitCost: time.Microsecond, AttachCost: -time.Millisecond}, time.Unix(0, 0), 0); !errors.Is(err, ErrConfig) {
		t.Errorf("negative attach cost: %v, want ErrConfig", err)
	}
}

// TestNoCycleNoCharge: a target under its budget never cycles, and is
// charged its hits alone, whatever a cycle would cost.
func TestNoCycleNoCharge(t *testing.T) {
	s := newSim(t, Config{Budget: 0.01, CPUs: 1, HitCost: 6 * time.Microsecond, DetachCost: time.Millisecond, AttachCost: time.Millisecond})
	s.run(time.Minute, 1000)
	st := s.c.Stats()
	if st.Detaches != 0 || math.Abs(st.Overhead-0.006) > 0.0005 {
		t.Errorf("stats %+v, want no detach and the hits' 0.006", st)
	}
}

// TestRunTimeCharged: the programs' own run time, which the kernel
// measures, is charged on top of the hits' trap cost: a target whose
// programs run 1 µs per hit of a 0.4 µs trap is charged 1.4 µs a hit, and
// kept within the budget by it, where the trap cost alone would have left
// it over.
func TestRunTimeCharged(t *testing.T) {
	cfg := Config{Budget: 0.01, CPUs: 2, HitCost: 400 * time.Nanosecond}
	// 30000 hits/s at 1.4 µs is 4.2% of a CPU, 2.1% of two: over 1%;
	// at 0.4 µs alone it would be 0.6%, under.
	s := newSim(t, cfg)
	s.runPerHit = time.Microsecond
	s.run(2*time.Minute, 30000)
	st := s.c.Stats()
	wall := s.now.Sub(time.Unix(1000, 0)).Seconds()
	want := float64(s.hits) * (cfg.HitCost + s.runPerHit).Seconds() / (wall * float64(cfg.CPUs))
	if math.Abs(st.Overhead-want) > 1e-9 {
		t.Errorf("estimated overhead %.6f, want %.6f: hits at 1.4 µs", st.Overhead, want)
	}
	if st.Detaches == 0 || st.Overhead > cfg.Budget*1.05 {
		t.Errorf("stats %+v: the run time should make the probes cycle and stay within 1%%", st)
	}
	// The same load without run time stays attached: it is the run time
	// that is over budget.
	s2 := newSim(t, cfg)
	s2.run(2*time.Minute, 30000)
	if st2 := s2.c.Stats(); st2.Detaches != 0 {
		t.Errorf("trap cost alone: %+v, want no detach", st2)
	}
}
