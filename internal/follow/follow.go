// Package follow stops the descendants of followed processes right after
// exec, so that probes can be attached before their main runs.
package follow

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/ctxwatch/ctxwatch/bpf"
)

// Exec is a followed process that has just executed a new program. When
// Stopped, it waits for Resume before running a single instruction of it.
type Exec struct {
	PID     int
	Stopped bool
}

// Follower watches forks and execs of followed processes.
type Follower struct {
	objs  bpf.FollowObjects
	links []link.Link
	rd    *ringbuf.Reader
}

// New loads and attaches the fork and exec hooks.
func New() (*Follower, error) {
	f := &Follower{}
	if err := bpf.LoadFollowObjects(&f.objs, nil); err != nil {
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

// Add follows process pid and, from now on, the processes it starts.
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

// Next blocks until a followed process executes a program, or Close.
func (f *Follower) Next() (Exec, error) {
	rec, err := f.rd.Read()
	if err != nil {
		if errors.Is(err, ringbuf.ErrClosed) {
			return Exec{}, os.ErrClosed
		}
		return Exec{}, fmt.Errorf("read exec event: %w", err)
	}
	var ev bpf.FollowExecEvent
	if len(rec.RawSample) < 8 {
		return Exec{}, fmt.Errorf("exec event of %d bytes", len(rec.RawSample))
	}
	ev.Tgid = uint32(rec.RawSample[0]) | uint32(rec.RawSample[1])<<8 | uint32(rec.RawSample[2])<<16 | uint32(rec.RawSample[3])<<24
	ev.Stopped = uint32(rec.RawSample[4])
	return Exec{PID: int(ev.Tgid), Stopped: ev.Stopped != 0}, nil
}

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
