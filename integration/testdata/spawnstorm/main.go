// Command spawnstorm starts goroutines inside one trace as fast as it can,
// and says how many events ctxwatch's probes must send for them, so that a
// test can check that each one was either received or counted as lost.
//
// Every spawn is one spawn event: main owns the trace when it starts a
// child. Every child but the silent ones makes exactly one check (one
// WithCancel call), its first, which is one first-check event. A silent
// child makes no context call: it is never judged.
//
// Run as: spawnstorm -n 20000 -lose 4 -par 256 -gc=false
//
// With -calm C, after every -burst spawns the storm pauses: it waits for
// its goroutines, then starts C more one at a time, each after a -pause
// and waited for before the next. However fast the machine's traps are,
// the storm then has quiet stretches in which the agent empties even the
// smallest ring, so the events of those goroutines get through.
//
// ctxwatch-flags: --trace-key type=main.traceKey
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

type traceKey struct{}

var (
	wg                    sync.WaitGroup
	nKept, nLost, nChecks atomic.Int64
	nSilent, nSpawned     atomic.Int64
	nCalmLost             int // lost goroutines started in calm stretches
)

// kept and lost make one check each: a second one would be a second try at
// a first check whose event found the ring buffer full.
func kept(ctx context.Context, done func()) {
	defer done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	nChecks.Add(1)
	if ctx.Value(traceKey{}) != nil {
		nKept.Add(1)
	}
}

func lost(ctx context.Context, done func()) {
	defer done()
	ctx, cancel := context.WithCancel(ctx) // want:site lost-at-spawn
	defer cancel()
	nChecks.Add(1)
	if ctx.Value(traceKey{}) == nil {
		nLost.Add(1)
	}
}

func silent(done func()) {
	defer done()
	nSilent.Add(1)
}

func main() {
	n := flag.Int("n", 20000, "goroutines to spawn")
	lose := flag.Int("lose", 4, "every lose'th goroutine is started without the trace (0: none)")
	quiet := flag.Int("silent", 0, "every silent'th goroutine (after lose) makes no context call (0: none)")
	par := flag.Int("par", 256, "goroutines running at once, at most")
	gc := flag.Bool("gc", true, "collect garbage; off, the runtime starts no GC worker inside the trace, so every spawn event is one of ours")
	wait := flag.Bool("wait", false, "after the storm, wait for the end of standard input")
	start := flag.Bool("start", false, "before the storm, wait for a line on standard input (time to attach with --pid)")
	burst := flag.Int("burst", 1000, "with -calm: goroutines spawned between two calm stretches")
	calm := flag.Int("calm", 0, "goroutines started one at a time after each burst (0: no calm stretches)")
	pause := flag.Duration("pause", 200*time.Millisecond, "with -calm: the wait before each calm goroutine")
	flag.Parse()
	if *n <= 0 || *par <= 0 || *burst <= 0 || *lose < 0 || *quiet < 0 || *calm < 0 {
		fmt.Fprintln(os.Stderr, "spawnstorm: -n, -par and -burst must be positive, -lose, -silent and -calm not negative")
		os.Exit(2)
	}
	stdin := bufio.NewScanner(os.Stdin)
	if *start {
		stdin.Scan()
	}
	if !*gc {
		debug.SetGCPercent(-1)
	}

	slots := make(chan struct{}, *par)
	done := func() {
		<-slots
		wg.Done()
	}
	ctx := context.WithValue(context.Background(), traceKey{}, fmt.Sprintf("%032x", 1))
	spawn := func(i int) (lostOne bool) {
		slots <- struct{}{}
		wg.Add(1)
		nSpawned.Add(1)
		switch {
		case *lose > 0 && i%*lose == *lose-1:
			go lost(context.Background(), done) // want:spawn lost-at-spawn
			return true
		case *quiet > 0 && i%*quiet == *quiet-1:
			go silent(done)
		default:
			go kept(ctx, done) // want:spawn propagated
		}
		return false
	}
	for i := 0; i < *n; {
		spawn(i)
		i++
		if *calm == 0 || i%*burst != 0 {
			continue
		}
		wg.Wait()
		for c := 0; c < *calm && i < *n; c++ {
			time.Sleep(*pause)
			if spawn(i) {
				nCalmLost++
			}
			i++
			wg.Wait()
		}
	}
	wg.Wait()
	// The events the probes must account for: a spawn event per goroutine
	// and a first check per goroutine that checked.
	spawned, checks := nSpawned.Load(), nChecks.Load()
	fmt.Printf("spawned %d kept %d lost %d silent %d checks %d events %d calm-lost %d\n",
		spawned, nKept.Load(), nLost.Load(), nSilent.Load(), checks, spawned+checks, nCalmLost)
	if *wait {
		for stdin.Scan() {
		}
	}
}
