package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
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

const nodeUsage = `ctxwatch node watches every Go process of this machine: one agent per
Kubernetes node (a DaemonSet, see deploy/), or per host.

Usage:
  sudo ctxwatch node [flags]

It finds the Go processes running now (by their build info) and each new one
right after its exec (a BPF tracepoint on sched_process_exec, no polling), and
lets go of those that exit. Processes of one executable share one set of
uprobes: twenty replicas cost one attachment per probe, and each process is
told apart by its pid in a BPF map. Each process is tagged with its container
id and pod UID, read from /proc/PID/cgroup (containerd, CRI-O, Docker; cgroup
v1 and v2), and the node name: on every JSON line, and as container.id,
k8s.pod.uid and k8s.node.name on exported spans and metrics. ctxwatch needs no
API-server access: the collector's k8sattributes processor adds the names.

Reports: JSON lines on standard output (a "summary" per process when it exits
and for all at SIGTERM), logs as JSON on standard error, break spans over OTLP
to OTEL_EXPORTER_OTLP_ENDPOINT (a DaemonSet points it at the node's collector
through status.hostIP), Prometheus metrics and /healthz on --metrics-addr.

Cost: the probes of a shared executable trap in every process running it,
watched or not (--exclude, --max-procs): uprobes belong to the file.

Flags:
`

// defaultNodeBudget is --overhead-budget's default in node mode, percent
// of the CPUs of the machine, per executable.
const defaultNodeBudget = 5

// nodeOptions are the flags of ctxwatch node.
type nodeOptions struct {
	match, exclude []string
	maxProcs       int
	nodeName       string
	logFormat      string
}

func parseNodeFlags(args []string, stderr io.Writer) (config, error) {
	c := config{node: &nodeOptions{}}
	n := c.node
	c.export.MetricsAddr = ":9464"
	var keys []string
	fs := flag.NewFlagSet("ctxwatch node", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, nodeUsage)
		fs.PrintDefaults()
		fmt.Fprint(stderr, `
Exit status: 0 after SIGTERM, SIGINT or --duration; 1 when ctxwatch itself
failed; 2 for a usage error.
`)
	}
	addWatchFlags(fs, &c, &keys, "json")
	fs.Var(listFlag{&n.match}, "match", "watch only executables whose file name matches `GLOB` (e.g. 'api-*'), repeatable; default: every Go program")
	fs.Var(listFlag{&n.exclude}, "exclude", "never watch executables whose file name matches `GLOB`, repeatable")
	fs.IntVar(&n.maxProcs, "max-procs", 64, "watch at most `N` processes at once; others are logged and left alone")
	fs.StringVar(&n.nodeName, "node-name", os.Getenv("NODE_NAME"), "the node's `NAME` for k8s.node.name; default: $NODE_NAME (the downward API's spec.nodeName)")
	fs.StringVar(&n.logFormat, "log-format", "json", "standard error's `format`: json (one object per line) or text")
	fs.Float64Var(&c.budgetPct, "overhead-budget", defaultNodeBudget, "keep the estimated cost of each executable's probes under `PCT` percent of the CPUs\n(probes are detached while over budget); 0 turns it off")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("%w: ctxwatch node takes no arguments, got %q", errUsage, fs.Args())
	}
	for _, g := range append(append([]string(nil), n.match...), n.exclude...) {
		if _, err := path.Match(g, ""); err != nil {
			return c, fmt.Errorf("%w: --match/--exclude %q: %v", errUsage, g, err)
		}
	}
	switch {
	case n.maxProcs < 1 || n.maxProcs > uprobe.MaxProcs:
		return c, fmt.Errorf("%w: --max-procs %d: want 1 to %d", errUsage, n.maxProcs, uprobe.MaxProcs)
	case n.logFormat != "json" && n.logFormat != "text":
		return c, fmt.Errorf("%w: --log-format %q: want json or text", errUsage, n.logFormat)
	}
	return c, checkWatchFlags(&c, keys)
}

// selected says whether an executable of this file name is to be watched.
func (n *nodeOptions) selected(name string) bool {
	for _, g := range n.exclude {
		if ok, _ := path.Match(g, name); ok {
			return false
		}
	}
	if len(n.match) == 0 {
		return true
	}
	for _, g := range n.match {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

// discovery decides which processes of the machine are watched. It runs
// on one goroutine: the scan of /proc, then each exec in turn.
type discovery struct {
	opts    *nodeOptions
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
func watchNode(cfg config, w *watcher, logger, errLog *log.Logger, sigs chan os.Signal, timeout <-chan time.Time,
	finish func(int, error) (int, error)) (int, error) {
	// Execs first, then the scan: a process started in between is seen
	// by one or the other (or both: considering a pid twice is harmless).
	f, err := follow.New(follow.Options{AllExecs: true})
	if err != nil {
		return finish(0, fmt.Errorf("watch the execs of this machine: %w", err))
	}
	defer f.Close()
	if w.goroutines, err = uprobe.NewGoroutineMap(); err != nil {
		return finish(0, err)
	}
	d := &discovery{opts: cfg.node, w: w, log: logger, warn: errLog, self: os.Getpid(), ignored: map[exeKey]bool{},
		fatal: make(chan error, 1)}
	if k, err := exeKeyOf(d.self); err == nil {
		d.selfExe = k
	}
	execs := make(chan follow.Exec, 4096)
	go func() {
		defer close(execs)
		if err := f.Run(func(ex follow.Exec) { execs <- ex }); err != nil {
			errLog.Printf("read execs: %v", err)
		}
	}()
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.scan()
		w.log.Printf("node %q: %d processes watched after the scan", cfg.node.nodeName, w.count())
		for ex := range execs {
			d.exec(ex)
		}
	}()
	var ferr error
	select {
	case <-sigs:
	case <-timeout:
	case ferr = <-d.fatal:
	}
	f.Close() // ends the exec loop
	<-done
	if n, err := f.Lost(); err == nil && n > 0 {
		errLog.Printf("%d execs could not be reported (the tracepoint's ring buffer was full): those processes were not considered", n)
	}
	return finish(0, ferr)
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
	if !d.opts.selected(name) {
		return
	}
	key, err := exeKeyOf(pid)
	if err != nil || key == d.selfExe || d.ignored[key] {
		return
	}
	if d.w.count() >= d.opts.maxProcs {
		if !d.capped {
			d.warn.Printf("--max-procs %d reached: pid %d (%s) and later processes are not watched until some exit", d.opts.maxProcs, pid, name)
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
	case errors.Is(err, errBadInput) && errors.Is(err, os.ErrPermission):
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
