// Package agent is ctxwatch's engine: it finds the Go programs to watch,
// inspects each one's executable, places the probes, reads their events
// from the ring buffer into one analysis per process, and passes the
// breaks and summaries to a findings.Sink. It runs in three modes: a
// command it starts (and every Go program that command executes), a
// running process, or every Go process of the machine (node mode).
package agent

import (
	"errors"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/ctxwatch/ctxwatch/internal/findings"
	"github.com/ctxwatch/ctxwatch/internal/uprobe"
)

// Config is what every mode needs.
type Config struct {
	// Probes says what the probes look for: trace keys, check functions,
	// user code prefixes.
	Probes uprobe.Options
	// RingSize is the ring buffer's size in bytes, a power of two.
	RingSize int
	// Budget is the overhead budget in percent of the target's CPUs (per
	// executable in node mode); 0 keeps the probes attached.
	Budget float64
	// Duration, when not 0, ends the watch: counted from the attach with
	// a PID, from the start otherwise. A command keeps running unwatched.
	Duration time.Duration
	// Sink gets every break and a summary per process; Live, if not nil,
	// the summaries so far about once a second.
	Sink findings.Sink
	Live findings.Live
	// Log says what is probed and what cannot be (--verbose); Warn is
	// always shown. Neither may be nil (use log.New(io.Discard, "", 0)).
	Log, Warn *log.Logger
	// Signals end the watch (SIGINT, SIGTERM). A command's own signals
	// other than SIGINT are passed on to it, and the watch ends when it
	// exits.
	Signals <-chan os.Signal
}

// Target says what to watch: exactly one of its fields is set.
type Target struct {
	PID     int      // a running process
	Command []string // a command to start, with its arguments
	Node    *Node    // every Go process of the machine
}

// Stop says why a watch ended.
type Stop int

const (
	// StopExited: the command, or the process watched, exited.
	StopExited Stop = iota + 1
	// StopSignal: a signal came on Config.Signals.
	StopSignal
	// StopDuration: Config.Duration passed.
	StopDuration
	// StopUnwatchable: the process executed a program that is not Go
	// (or is the Go toolchain's own).
	StopUnwatchable
	// StopFailed: Run's error says why.
	StopFailed
)

func (s Stop) String() string {
	switch s {
	case StopExited:
		return "exited"
	case StopSignal:
		return "signal"
	case StopDuration:
		return "duration"
	case StopUnwatchable:
		return "unwatchable"
	case StopFailed:
		return "failed"
	}
	return fmt.Sprintf("Stop(%d)", int(s))
}

// Result is how a watch ended.
type Result struct {
	// Stop is why.
	Stop Stop
	// Code is the command's exit status (128+N when a signal N killed
	// it); 0 in the other modes.
	Code int
	// Breaks counts the break occurrences reported.
	Breaks int
}

// ErrBadInput marks an error about what ctxwatch was pointed at or the
// environment it cannot work in (not a Go program, a pid that is gone,
// missing privileges, a kernel without a feature), as opposed to a
// failure of ctxwatch itself.
var ErrBadInput = errors.New("bad input")

// inputError is an error marked as bad input; its text is the error's own.
type inputError struct{ err error }

func (e inputError) Error() string   { return e.err.Error() }
func (e inputError) Unwrap() []error { return []error{e.err, ErrBadInput} }

// badInput marks err as bad input (nil stays nil).
func badInput(err error) error {
	if err == nil {
		return nil
	}
	return inputError{err}
}

// Preflight checks what watching t needs of this process and this kernel,
// before anything is set up: the capabilities, a locked-memory limit BPF
// maps fit under (before Linux 5.11), and the kernel's features. Run
// calls it; a caller that sets up outputs first (an OTLP exporter, which
// flushes on close) calls it before them, so that a start-up failure is
// the one line that says why.
func Preflight(t Target) error {
	if missing, err := missingCaps(t.Node == nil); err != nil {
		return err
	} else if len(missing) > 0 {
		return badInput(fmt.Errorf("missing capabilities %s: run as root (sudo ctxwatch ...) or grant them", strings.Join(missing, ", ")))
	}
	if err := rlimit.RemoveMemlock(); errors.Is(err, unix.EPERM) {
		// Only kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; from
		// 5.11 RemoveMemlock changes nothing and needs nothing.
		return badInput(fmt.Errorf("missing capabilities CAP_SYS_RESOURCE: this kernel charges BPF maps to the locked memory limit, and raising it was refused: %w", err))
	} else if err != nil {
		return fmt.Errorf("raise locked memory limit: %w", err)
	}
	// -- CMD and node follow execs (tp_btf programs: BTF).
	return badInput(checkKernel(hostKernel(), len(t.Command) > 0 || t.Node != nil))
}

// Run watches t until it ends (the command or process exits), a signal
// arrives, or cfg.Duration passes, then summarises every process. The
// Result says why it stopped.
func Run(cfg Config, t Target) (Result, error) {
	switch {
	case t.PID != 0 && (len(t.Command) > 0 || t.Node != nil), len(t.Command) > 0 && t.Node != nil:
		return Result{Stop: StopFailed}, errors.New("agent: more than one target")
	case t.PID == 0 && len(t.Command) == 0 && t.Node == nil:
		return Result{Stop: StopFailed}, errors.New("agent: no target")
	}
	if err := Preflight(t); err != nil {
		return Result{Stop: StopFailed}, err
	}
	w, err := newWatcher(cfg)
	if err != nil {
		return Result{Stop: StopFailed}, err
	}
	defer w.close()
	if cfg.Budget > 0 {
		w.budget = newOverheadBudget(cfg.Budget, cfg.Log.Printf)
		// The programs' own run time is charged as the kernel measures it.
		// Without it (CAP_SYS_ADMIN, where the kernel let uprobes be made
		// with less), the user is told once a process is watched: a run
		// that cannot attach says only why.
		if stats, err := uprobe.EnableRunTimeStats(); err != nil {
			w.budget.runTimeErr = err
		} else {
			defer stats.Close()
		}
		if t.PID == 0 {
			w.budget.begin() // else once attached (watchPID)
		}
	}

	stopLoop := make(chan struct{})
	loopDone := make(chan error, 1)
	go func() { loopDone <- w.loop(stopLoop) }()
	var timeout <-chan time.Time
	if cfg.Duration > 0 && t.PID == 0 {
		timeout = time.After(cfg.Duration)
	}

	var (
		code int
		stop Stop
	)
	switch {
	case t.Node != nil:
		w.node = &nodeIdentity{nodeName: t.Node.NodeName, procfs: "/proc"}
		stop, err = w.watchNode(t.Node, cfg.Signals, timeout)
	case t.PID != 0:
		if err = checkPID(t.PID); err != nil {
			stop, err = StopFailed, badInput(err)
			break
		}
		// The user named this process: a check function it lacks is a
		// mistake to report, not a binary to pass over.
		w.requireCheckFuncs = true
		stop, err = w.watchPID(t.PID, cfg.Duration, cfg.Signals)
	default:
		code, err = w.runCommand(t.Command, cfg.Signals, timeout)
		stop = StopExited
		if err != nil {
			stop = StopFailed
		}
	}

	// Probes out first: the loop summarises after the ring buffer has been
	// quiet for a while, which a busy target would put off.
	w.detachAll()
	close(stopLoop)
	if lerr := <-loopDone; lerr != nil && err == nil {
		stop, err = StopFailed, lerr
	}
	return Result{Stop: stop, Code: code, Breaks: w.breaks}, err
}
