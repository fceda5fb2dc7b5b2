// Package follow reports execs of processes to the agent: it stops the
// descendants of followed processes right after exec, so that probes can be
// attached before their main runs; it reports the execs of watched
// processes without stopping them, so that the agent learns that the
// program it probes was replaced; and it can report every exec on the host.
package follow

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/ctxwatch/ctxwatch/bpf"
)

// Exec is a process that has just executed a new program. When Stopped, it
// waits for Resume before running a single instruction of it; only
// followed processes (Add) are stopped.
type Exec struct {
	PID     int
	Stopped bool
	// At is when the exec happened, on the clock of Now. Events are read
	// after the fact: a process inspected since At already runs the new
	// program.
	At uint64
}

// Now returns the time on the clock of Exec.At: CLOCK_MONOTONIC in
// nanoseconds, which is what bpf_ktime_get_ns reads.
func Now() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(fmt.Sprintf("read CLOCK_MONOTONIC: %v", err)) // cannot fail on Linux
	}
	return uint64(ts.Nano())
}

// Options say which execs are reported besides those of the processes
// given to Add and Watch.
type Options struct {
	// AllExecs reports every exec on the host, without stopping the
	// process (unless it is followed).
	AllExecs bool
}

// Follower watches forks and execs.
type Follower struct {
	objs  bpf.FollowObjects
	links []link.Link
	rd    *ringbuf.Reader
}

// New loads and attaches the fork and exec hooks.
func New(opts Options) (*Follower, error) {
	spec, err := bpf.LoadFollow()
	if err != nil {
		return nil, fmt.Errorf("load exec follower spec: %w", err)
	}
	if opts.AllExecs {
		if err := spec.Variables[bpf.FollowVarAllExecs].Set(uint8(1)); err != nil {
			return nil, fmt.Errorf("set exec follower to report every exec: %w", err)
		}
	}
	f := &Follower{}
	if err := spec.LoadAndAssign(&f.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load exec follower: %+v", ve)
		}
		return nil, fmt.Errorf("load exec follower: %w", err)
	}
	for _, p := range []*ebpf.Program{f.objs.OnFork, f.objs.OnExec} {
		l, err := link.AttachTracing(link.TracingOptions{Program: p})
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("attach exec follower: %w", err)
		}
		f.links = append(f.links, l)
	}
	rd, err := ringbuf.NewReader(f.objs.Execs)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("read exec follower events: %w", err)
	}
	f.rd = rd
	return f, nil
}

// Add follows process pid and, from now on, the processes it starts: each
// of them is stopped right after it executes a program.
func (f *Follower) Add(pid int) error {
	if err := f.objs.Followed.Put(uint32(pid), uint8(1)); err != nil {
		return fmt.Errorf("follow process %d: %w", pid, err)
	}
	return nil
}

// Remove stops following pid (its later children are not followed either).
func (f *Follower) Remove(pid int) {
	_ = f.objs.Followed.Delete(uint32(pid))
}

// Watch reports the execs of process pid, without stopping it and without
// following its children.
func (f *Follower) Watch(pid int) error {
	if err := f.objs.Watched.Put(uint32(pid), uint8(1)); err != nil {
		return fmt.Errorf("watch execs of process %d: %w", pid, err)
	}
	return nil
}

// Unwatch stops reporting the execs of pid.
func (f *Follower) Unwatch(pid int) {
	_ = f.objs.Watched.Delete(uint32(pid))
}

// Lost returns how many execs could not be reported: the ring buffer had
// no room for them.
func (f *Follower) Lost() (uint64, error) {
	var n uint64
	if err := f.objs.Lost.Lookup(uint32(0), &n); err != nil {
		return 0, fmt.Errorf("read lost exec count: %w", err)
	}
	return n, nil
}

// Next blocks until a reported process executes a program, or Close.
func (f *Follower) Next() (Exec, error) {
	rec, err := f.rd.Read()
	if err != nil {
		if errors.Is(err, ringbuf.ErrClosed) {
			return Exec{}, os.ErrClosed
		}
		return Exec{}, fmt.Errorf("read exec event: %w", err)
	}
	if len(rec.RawSample) < 16 {
		return Exec{}, fmt.Errorf("exec event of %d bytes", len(rec.RawSample))
	}
	// struct exec_event (bpf.FollowExecEvent): tgid, stopped, time_ns.
	tgid := binary.NativeEndian.Uint32(rec.RawSample[0:])
	stopped := binary.NativeEndian.Uint32(rec.RawSample[4:])
	at := binary.NativeEndian.Uint64(rec.RawSample[8:])
	return Exec{PID: int(tgid), Stopped: stopped != 0, At: at}, nil
}

// Run calls fn with each exec, in turn, until Close: then it returns nil,
// or else the error that ended the reading.
func (f *Follower) Run(fn func(Exec)) error {
	for {
		ex, err := f.Next()
		if errors.Is(err, os.ErrClosed) {
			return nil
		}
		if err != nil {
			return err
		}
		fn(ex)
	}
}

// SetDeadline makes Next return os.ErrDeadlineExceeded once t has passed
// with no exec to report; the zero time waits for ever.
func (f *Follower) SetDeadline(t time.Time) { f.rd.SetDeadline(t) }

// Resume lets a stopped process run.
func Resume(pid int) error {
	if err := unix.Kill(pid, unix.SIGCONT); err != nil {
		return fmt.Errorf("resume process %d: %w", pid, err)
	}
	return nil
}

// Close detaches the hooks.
func (f *Follower) Close() error {
	var errs []error
	if f.rd != nil {
		errs = append(errs, f.rd.Close())
	}
	for _, l := range f.links {
		errs = append(errs, l.Close())
	}
	errs = append(errs, f.objs.Close())
	return errors.Join(errs...)
}
