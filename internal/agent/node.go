package agent

import (
	"errors"
	"fmt"
	"log"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ctxwatch/ctxwatch/internal/follow"
	"github.com/ctxwatch/ctxwatch/internal/target"
	"github.com/ctxwatch/ctxwatch/internal/uprobe"
)

// Node selects the processes watched in node mode.
type Node struct {
	// Match, when not empty, selects only executables whose file name
	// matches one of these globs (path.Match); Exclude never selects
	// those that match one of its.
	Match, Exclude []string
	// MaxProcs caps the processes watched at once; others are logged and
	// left alone until some exit.
	MaxProcs int
	// NodeName tags every process (k8s.node.name).
	NodeName string
}

// Selected says whether an executable of this file name is to be watched.
func (n *Node) Selected(name string) bool {
	for _, g := range n.Exclude {
		if ok, _ := path.Match(g, name); ok {
			return false
		}
	}
	if len(n.Match) == 0 {
		return true
	}
	for _, g := range n.Match {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

// discovery decides which processes of the machine are watched. It runs
// on one goroutine: the scan of /proc, then each exec in turn.
type discovery struct {
	opts    *Node
	w       *watcher
	log     *log.Logger // --verbose
	warn    *log.Logger
	self    int
	selfExe exeKey
	// Executables found not to be Go programs, or not to be watched, so
	// that each is inspected once. Bounded: forgotten when full.
	ignored map[exeKey]bool
	capped  bool // --max-procs reached, logged
	// fatal gets the first error that no process can escape, such as a
	// kernel that refuses ctxwatch's capabilities for uprobes.
	fatal chan error
}

const maxIgnored = 4096

// watchNode watches the machine's Go processes until a signal or timeout.
func (w *watcher) watchNode(n *Node, sigs <-chan os.Signal, timeout <-chan time.Time) (Stop, error) {
	// Execs first, then the scan: a process started in between is seen
	// by one or the other (or both: considering a pid twice is harmless).
	f, err := follow.New(follow.Options{AllExecs: true})
	if err != nil {
		return StopFailed, fmt.Errorf("watch the execs of this machine: %w", err)
	}
	defer f.Close()
	if w.goroutines, err = uprobe.NewGoroutineMap(); err != nil {
		return StopFailed, err
	}
	d := &discovery{opts: n, w: w, log: w.log, warn: w.warn, self: os.Getpid(), ignored: map[exeKey]bool{},
		fatal: make(chan error, 1)}
	if k, err := exeKeyOf(d.self); err == nil {
		d.selfExe = k
	}
	execs := make(chan follow.Exec, 4096)
	go func() {
		defer close(execs)
		if err := f.Run(func(ex follow.Exec) { execs <- ex }); err != nil {
			w.warn.Printf("read execs: %v", err)
		}
	}()
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.scan()
		w.log.Printf("node %q: %d processes watched after the scan", n.NodeName, w.count())
		for ex := range execs {
			d.exec(ex)
		}
	}()
	var (
		stop Stop
		ferr error
	)
	select {
	case <-sigs:
		stop = StopSignal
	case <-timeout:
		stop = StopDuration
	case ferr = <-d.fatal:
		stop = StopFailed
	}
	f.Close() // ends the exec loop
	<-done
	if n, err := f.Lost(); err == nil && n > 0 {
		w.warn.Printf("%d execs could not be reported (the tracepoint's ring buffer was full): those processes were not considered", n)
	}
	return stop, ferr
}

// scan considers every process running now.
func (d *discovery) scan() {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		d.warn.Printf("list processes: %v", err)
		return
	}
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			d.consider(pid)
		}
	}
}

// exec handles a process's exec of a new program.
func (d *discovery) exec(ex follow.Exec) {
	// A watched process that executes anything, itself included, is a new
	// program: goroutine ids restart, and its old probes no longer match.
	// Unless it was found after this exec: then it is watched already.
	d.w.execd(ex.PID, ex.At)
	d.consider(ex.PID)
}

// consider watches process pid if it is a Go program that the flags select.
func (d *discovery) consider(pid int) {
	if pid == d.self || d.w.session(uint32(pid)) != nil {
		return
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return // a kernel thread, or gone
	}
	name := filepath.Base(strings.TrimSuffix(exe, " (deleted)"))
	if !d.opts.Selected(name) {
		return
	}
	key, err := exeKeyOf(pid)
	if err != nil || key == d.selfExe || d.ignored[key] {
		return
	}
	if d.w.count() >= d.opts.MaxProcs {
		if !d.capped {
			d.warn.Printf("--max-procs %d reached: pid %d (%s) and later processes are not watched until some exit", d.opts.MaxProcs, pid, name)
			d.capped = true
		}
		return
	}
	d.capped = false
	t0 := time.Now()
	err = d.w.attach(pid)
	switch {
	case err == nil:
		d.log.Printf("pid %d (%s) watched, %s after it was found", pid, name, time.Since(t0).Round(time.Millisecond))
	case errors.Is(err, target.ErrNotGo) || errors.Is(err, errSkipped):
		if len(d.ignored) >= maxIgnored {
			clear(d.ignored)
		}
		d.ignored[key] = true
	case errors.Is(err, ErrBadInput) && errors.Is(err, os.ErrPermission):
		select {
		case d.fatal <- err:
		default:
		}
	case processGone(pid):
		d.log.Printf("pid %d (%s) exited before it was watched", pid, name)
	default:
		d.warn.Printf("pid %d (%s) not watched: %v", pid, name, err)
	}
}

// processGone reports whether pid no longer runs.
func processGone(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return errors.Is(err, os.ErrNotExist)
}
