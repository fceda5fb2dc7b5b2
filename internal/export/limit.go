package export

import "github.com/ctxwatch/ctxwatch/internal/analysis"

// siteKey is a break site as the analysis counts it: kind, where the break
// was seen and where the goroutine was spawned.
type siteKey struct {
	pid         uint32
	kind        analysis.Kind
	site, spawn analysis.Frame
}

func keyOf(b analysis.Break) siteKey {
	k := siteKey{pid: b.PID, kind: b.Kind, site: b.Site}
	if len(b.Spawn) > 0 {
		k.spawn = b.Spawn[0]
	} else if len(b.Handoff) > 0 {
		k.spawn = b.Handoff[0]
	}
	return k
}

// limiter is a token bucket per break site. It runs on the probes' clock
// (the break's own CLOCK_MONOTONIC time), not on when the event happens to
// be read, so a burst read late from the ring buffer is limited as it
// happened, and tests are exact.
type limiter struct {
	rate, burst float64
	buckets     map[siteKey]*bucket
}

type bucket struct {
	tokens     float64
	last       uint64 // ns
	suppressed uint64 // occurrences since the last allowed one
}

func newLimiter(rate float64) *limiter {
	return &limiter{rate: rate, burst: max(1, rate), buckets: map[siteKey]*bucket{}}
}

// allow reports whether an occurrence at now (ns) may become a span, and
// how many occurrences of the site were suppressed since the last one that
// did.
func (l *limiter) allow(k siteKey, now uint64) (bool, uint64) {
	b, ok := l.buckets[k]
	if !ok {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[k] = b
	}
	if now > b.last {
		b.tokens = min(l.burst, b.tokens+float64(now-b.last)/1e9*l.rate)
		b.last = now
	}
	if b.tokens < 1 {
		b.suppressed++
		return false, 0
	}
	b.tokens--
	n := b.suppressed
	b.suppressed = 0
	return true, n
}
