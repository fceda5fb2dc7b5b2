// Command ctxwatch watches a running Go program with eBPF and names the
// source lines where its trace context is lost.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ctxwatch/ctxwatch/internal/agent"
	"github.com/ctxwatch/ctxwatch/internal/export"
	"github.com/ctxwatch/ctxwatch/internal/findings"
	"github.com/ctxwatch/ctxwatch/internal/report"
	"github.com/ctxwatch/ctxwatch/internal/uprobe"
)

const usage = `ctxwatch shows, at run time, where a Go program loses its trace context.

Usage:
  sudo ctxwatch [flags] --pid PID        watch a running Go process
  sudo ctxwatch [flags] -- CMD [ARGS]    start CMD with probes in place before its main
                                         runs; Go programs it starts are watched too
  go test -exec 'sudo ctxwatch --fail-on-break --' ./...
                                         a CI gate, like the race detector
  sudo ctxwatch node [flags]             watch every Go process of the machine, as a
                                         Kubernetes DaemonSet does (ctxwatch node --help)
  ctxwatch report --html OUT FILE        the HTML report page of saved --format json
                                         output (ctxwatch report --help)

What is watched (uprobes, filtered by process):
  goroutine spawns       runtime.newproc's queueing of the new goroutine: which
                         goroutine started which, where
  context.WithValue      trace ids entering contexts; every call is also a check
  WithCancel, WithCancelCause, WithDeadline(Cause), WithTimeout(Cause),
  WithoutCancel, AfterFunc
                         checks: the context a goroutine really uses (those the
                         compiler inlined cannot be watched; --verbose lists them)
  time.AfterFunc,        work your code registers inside a trace: the goroutine
  context.AfterFunc      the runtime later starts for it inherits the trace, as
                         a spawn at the registration line
  OTel SDK tracer Start  seen through the context.WithValue that stores the new
                         span: the span the SDK made is the ground truth, also
                         for contexts ctxwatch cannot walk (*gin.Context)
  --check-func functions checks on your own functions' context argument
  log/slog records       written ones (level enabled): (*Logger).log and
                         logAttrs, through which the package functions and
                         Logger methods (also With/WithGroup loggers) go, at
                         their call of the handler; the record is never read
  --log-func functions   your own logging helpers: a record written with
                         their first context argument
  channel sends and      runtime.chansend and chanrecv: plain sends and
  receives               receives, range loops, one-case select with default,
                         called from your code; your multi-case selects' calls
                         of runtime.selectgo and tests of its result: their
                         receive cases. Not seen: select send cases, and
                         hand-offs that use no channel (a mutex-protected
                         queue or slice, sync.Cond, sync.Pool)

Break kinds:
  lost-at-spawn  a goroutine started inside trace T first used a context with no trace
  new-root       ... started a new trace instead of continuing T
  dropped        a goroutine that put T into a context later used one without T
                 while T was still in scope (request not finished, span open)
  overwritten    WithValue replaced a trace value under the same key
  log-without-trace
                 a goroutine with T in scope wrote a log record (log/slog, or a
                 --log-func call) with a context that carries no trace:
                 slog.Info in a handler, not slog.InfoContext(ctx, ...)
  stale-parent   a goroutine started a span on a context whose span it had itself
                 started and ended (ctx, span = tracer.Start(ctx, ...) in a loop);
                 spans of other goroutines on an ended parent are not breaks;
                 per Start line, the summary counts the spans started on a
                 parent of the goroutine's own, kept (open parent) and stale,
                 and the retention (table: START SITE; JSON: start_sites)
  lost-at-handoff
                 a goroutine received (in your code) a channel element your code
                 sent with T in scope, and its next trace-bearing act carried no
                 trace or started another: reported at the receiver's line, with
                 the send's stack ("handoff"); a job carrying another trace is
                 not judged; a receiver inside a unit of work of its own (a span
                 open, its request not canceled) keeps its trace;
                 a chan struct{} (a signal, a semaphore) hands nothing
Only checks with your code on the stack are judged (package main, the main
module, --user-code prefixes); the line reported is your innermost frame, and
every break carries your frames of the check ("stack"; the table lists them
under --verbose).
What a goroutine inherited is judged at its first trace-bearing act (a span
start, a trace key set, a log record, a --check-func call), even after its
spawner returned.
With OTel, a traceless WithCancel/WithTimeout alone is no break: the work that
follows decides, or, if none follows, the end of the watch. Goroutines started
under sync.Once (lazy singletons) inherit nothing; a job handed to one through
a channel is judged.

Flags:
`

type config struct {
	target      agent.Target
	duration    time.Duration
	format      string
	output      string
	failOnBreak bool
	verbose     bool
	ringSize    int
	budgetPct   float64 // --overhead-budget; -1: the default of the mode
	opts        uprobe.Options
	export      export.Config
	logFormat   string // ctxwatch node: standard error's format
	html        string // --html: the page's file
	page        report.HTMLOptions
}

type listFlag struct {
	vals *[]string
}

func (l listFlag) String() string {
	if l.vals == nil {
		return ""
	}
	return strings.Join(*l.vals, ",")
}
func (l listFlag) Set(s string) error { *l.vals = append(*l.vals, s); return nil }

// errUsage marks command line errors (exit status 2).
var errUsage = errors.New("usage")

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	var keys []string
	fs := flag.NewFlagSet("ctxwatch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
		fmt.Fprint(stderr, `
Exit status: the command's own with -- CMD; 3 with --fail-on-break when a
break was found; 2 for a usage error or bad input (a pid that is not a Go
program ctxwatch can watch, missing privileges, a kernel that lacks BPF ring
buffers or BTF: one line says which); 1 when ctxwatch itself failed.
`)
	}
	fs.IntVar(&c.target.PID, "pid", 0, "watch the running Go process `PID`")
	addWatchFlags(fs, &c, &keys, "table")
	fs.Float64Var(&c.budgetPct, "overhead-budget", -1, fmt.Sprintf("keep the estimated cost of the probes under `PCT` percent of the target's CPUs\n"+
		"(probe hits × a per-hit cost measured at start, the probes' run time and each detach and\n"+
		"re-attach; probes are detached while over budget, and the summary's sampled_fraction says\n"+
		"for how much of the time they were in). The estimate leaves out the caches a trap leaves\n"+
		"cold in a real program: measured, a service paid 1.3x to 1.6x the estimate (README, Cost);\n"+
		"default %d with --pid, off with -- CMD; 0 turns it off", defaultPIDBudget))
	if err := parseQuiet(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, fmt.Errorf("%w: %v", errUsage, err)
	}
	c.target.Command = fs.Args()
	switch {
	case c.target.PID == 0 && len(c.target.Command) == 0:
		return c, fmt.Errorf("%w: give --pid PID or -- CMD [ARGS]", errUsage)
	case c.target.PID != 0 && len(c.target.Command) != 0:
		return c, fmt.Errorf("%w: give --pid or a command, not both", errUsage)
	case c.target.PID < 0:
		return c, fmt.Errorf("%w: --pid %d is not a process id", errUsage, c.target.PID)
	}
	if c.budgetPct == -1 {
		c.budgetPct = 0
		if c.target.PID != 0 {
			c.budgetPct = defaultPIDBudget
		}
	}
	return c, checkWatchFlags(&c, keys)
}

// addWatchFlags defines the flags of every mode, --pid, -- CMD and node,
// with format as --format's default.
func addWatchFlags(fs *flag.FlagSet, c *config, keys *[]string, format string) {
	fs.DurationVar(&c.duration, "duration", 0, "stop watching after `D` (e.g. 30s); default: until the target exits or Ctrl-C")
	fs.Var(listFlag{keys}, "trace-key", "a context key that holds a trace id, repeatable:\n`type=IMPORT/PATH.TypeName` for a key type with one value (type traceKey struct{}),\ntype=IMPORT/PATH.TypeName,value=VALUE for a named string or integer type whose other\nconstants key other values (type ctxKey string; const traceIDKey ctxKey = \"trace_id\":\ntype=main.ctxKey,value=trace_id), or string=TEXT (a plain string key)")
	fs.Var(listFlag{&c.opts.CheckFuncs}, "check-func", "also treat calls of `FUNC` (e.g. main.process) as checks of its first context argument, repeatable")
	fs.Var(listFlag{&c.opts.LogFuncs}, "log-func", "also treat calls of `FUNC` (e.g. main.logf) as log records written with its first context argument, repeatable")
	fs.Var(listFlag{&c.opts.UserPrefixes}, "user-code", "judge code under package path `PREFIX` as user code too, repeatable")
	fs.StringVar(&c.format, "format", format, "output `format`: table (live on a terminal, summary at exit) or json (JSON lines)")
	fs.StringVar(&c.output, "output", "", "write the report to `FILE` instead of standard output")
	fs.BoolVar(&c.failOnBreak, "fail-on-break", false, "exit with status 3 when a break was found")
	fs.BoolVar(&c.verbose, "verbose", false, "log what is probed and what cannot be, to standard error")
	fs.BoolVar(&c.verbose, "v", false, "short for --verbose")
	fs.IntVar(&c.ringSize, "ring-size", 4<<20, "ring buffer size in `bytes` (a power of two)")
	fs.StringVar(&c.export.Endpoint, "otlp-endpoint", "", "export each break as a span inside the trace that broke, to the OTLP collector at base `URL`\n(e.g. http://localhost:4317 for grpc, http://localhost:4318 for http/protobuf);\ndefault: OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT; nothing is sent unless an endpoint or protocol is set")
	fs.StringVar(&c.export.Protocol, "otlp-protocol", "", "OTLP `protocol`: grpc or http/protobuf; default: OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL, else http/protobuf")
	fs.Float64Var(&c.export.Rate, "otlp-rate", export.DefaultRate, "at most `N` break spans per second per break site; occurrences over it are counted on the site's next span")
	fs.StringVar(&c.export.MetricsAddr, "metrics-addr", c.export.MetricsAddr, "serve Prometheus metrics (breaks, traced spawns, propagated, per site) on http://`ADDR`/metrics")
	fs.StringVar(&c.html, "html", "", "also write a self-contained HTML report page to `FILE` when the watch ends")
	addPageFlags(fs, &c.page)
}

// addPageFlags defines the flags of the HTML page, shared with ctxwatch
// report.
func addPageFlags(fs *flag.FlagSet, o *report.HTMLOptions) {
	fs.StringVar(&o.SourceDir, "source", "", "HTML page: show source lines from `DIR` for module-relative file names (-trimpath builds);\ndefault: the working directory")
	fs.StringVar(&o.TraceURL, "trace-url", "", "HTML page: link trace ids to `URL`, where {trace_id} is replaced by the id\n(e.g. 'http://jaeger:16686/trace/{trace_id}')")
}

// checkPageFlags checks the flags of addPageFlags once parsed.
func checkPageFlags(o report.HTMLOptions) error {
	if o.SourceDir != "" {
		if st, err := os.Stat(o.SourceDir); err != nil || !st.IsDir() {
			return fmt.Errorf("%w: --source %q: not a directory", errUsage, o.SourceDir)
		}
	}
	if o.TraceURL != "" {
		u, err := url.Parse(strings.ReplaceAll(o.TraceURL, "{trace_id}", "0"))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || !strings.Contains(o.TraceURL, "{trace_id}") {
			return fmt.Errorf("%w: --trace-url %q: want an http(s) URL with {trace_id} in it", errUsage, o.TraceURL)
		}
	}
	return nil
}

// checkWatchFlags checks the flags of addWatchFlags once parsed.
func checkWatchFlags(c *config, keys []string) error {
	for _, k := range keys {
		tk, err := uprobe.ParseTraceKey(k)
		if err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		c.opts.TraceKeys = append(c.opts.TraceKeys, tk)
	}
	switch {
	case c.format != "table" && c.format != "json":
		return fmt.Errorf("%w: --format %q: want table or json", errUsage, c.format)
	case c.budgetPct > 100 || (c.budgetPct < 0 && c.budgetPct != -1):
		return fmt.Errorf("%w: --overhead-budget %g: want a percentage in (0, 100], or 0 for none", errUsage, c.budgetPct)
	case c.ringSize < 4096 || c.ringSize&(c.ringSize-1) != 0:
		return fmt.Errorf("%w: --ring-size %d: want a power of two of at least 4096", errUsage, c.ringSize)
	case len(c.opts.TraceKeys) > uprobe.MaxKeys:
		return fmt.Errorf("%w: at most %d --trace-key", errUsage, uprobe.MaxKeys)
	}
	if err := c.export.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if c.html == "" && c.page != (report.HTMLOptions{}) {
		return fmt.Errorf("%w: --source and --trace-url are for the HTML page: give --html FILE", errUsage)
	}
	return checkPageFlags(c.page)
}

func main() {
	// An agent beside the program it watches keeps its memory low rather
	// than its GC rare: the heap it keeps is small (about 12 MB through a
	// million goroutines), and at the default GOGC its peak doubled that,
	// plus whatever the GC fell behind by on a busy machine. At 25 the
	// peak is 9 MB lower for no measurable CPU (TestAgentMemory). GOGC in
	// the environment still decides.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(25)
	}
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	stderr := lineEscaper{os.Stderr} // log lines quote what the target names
	logger := log.New(stderr, "ctxwatch: ", 0)
	if len(args) > 0 && args[0] == "report" {
		return runReport(args[1:], os.Stderr, logger)
	}
	parse := parseFlags
	if len(args) > 0 && args[0] == "node" {
		parse, args = parseNodeFlags, args[1:]
	}
	cfg, err := parse(args, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		logger.Print(strings.TrimPrefix(err.Error(), "usage: "))
		logger.Print("run ctxwatch --help for usage")
		return 2
	}
	errLog := log.New(stderr, "ctxwatch: ", 0)
	if cfg.target.Node != nil && cfg.logFormat == "json" {
		// A service's logs: one JSON object per line, for the cluster's
		// log pipeline.
		h := slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})
		logger, errLog = slog.NewLogLogger(h, slog.LevelDebug), slog.NewLogLogger(h, slog.LevelWarn)
	}
	if !cfg.verbose {
		logger.SetOutput(io.Discard)
	}
	code, err := watch(cfg, logger, errLog)
	if err != nil {
		errLog.Print(err)
		if errors.Is(err, agent.ErrBadInput) {
			return 2
		}
		return 1
	}
	return code
}

// defaultPIDBudget is --overhead-budget's default with --pid, in percent.
const defaultPIDBudget = 5

// watch sets up the outputs, runs the agent, and returns the exit status.
func watch(cfg config, logger, errLog *log.Logger) (code int, err error) {
	// Missing capabilities or kernel features stop ctxwatch before any
	// output exists: one line says why, not also an exporter that failed
	// to flush into a collector on the way out.
	if err := agent.Preflight(cfg.target); err != nil {
		return 0, err
	}
	out := io.Writer(os.Stdout)
	if cfg.output != "" {
		f, err := os.Create(cfg.output)
		if err != nil {
			return 0, fmt.Errorf("open report file: %w", err)
		}
		defer f.Close()
		out = f
	}
	var sink findings.Sink
	var live findings.Live
	if cfg.format == "json" {
		sink = report.NewJSON(out)
	} else {
		t := report.NewTable(out, cfg.output == "" && isTerminal(os.Stdout))
		t.Stacks = cfg.verbose
		sink, live = t, t
	}
	if cfg.html != "" {
		// Opened now, so that a path that cannot be written fails before
		// the target runs; written when the watch ends.
		f, err := os.Create(cfg.html)
		if err != nil {
			return 0, fmt.Errorf("open HTML report file: %w", err)
		}
		defer f.Close()
		page := report.NewHTML(cfg.page)
		sink = findings.Multi{sink, page}
		defer func() {
			if err := writePage(page, f); err != nil {
				errLog.Print(err)
				if code == 0 {
					code = 1
				}
			}
		}()
	}
	if cfg.export.Enabled() {
		warn := warnExportOnce(errLog)
		exp, err := export.New(context.Background(), cfg.export, sink)
		if err != nil {
			return 0, err
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			if err := exp.Close(ctx); err != nil {
				warn(fmt.Errorf("export: %w", err))
			}
		}()
		sink = exp
		if live != nil {
			live = findings.MultiLive{live, exp}
		} else {
			live = exp
		}
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	res, err := agent.Run(agent.Config{
		Probes:   cfg.opts,
		RingSize: cfg.ringSize,
		Budget:   cfg.budgetPct,
		Duration: cfg.duration,
		Sink:     sink,
		Live:     live,
		Log:      logger,
		Warn:     errLog,
		Signals:  sigs,
	}, cfg.target)
	logger.Printf("stopped: %s", res.Stop)
	code = res.Code
	// A gate fails on a break; with a command, only if the command passed
	// (its own failure comes first).
	if err == nil && cfg.failOnBreak && res.Breaks > 0 && (code == 0 || cfg.target.PID != 0) {
		code = 3
	}
	return code, err
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
