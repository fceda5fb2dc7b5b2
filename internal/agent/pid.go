package agent

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ctxwatch/ctxwatch/internal/follow"
	"github.com/ctxwatch/ctxwatch/internal/target"
)

// watchPID watches the running process pid until it exits, executes a
// program that cannot be watched, or ctxwatch is stopped.
//
// The process is held by a pidfd from the start: once it has exited, the
// pidfd says so even if another process has taken its pid, so ctxwatch
// never goes on to watch (or leave probes in) a stranger. Its execs are
// reported (not stopped) by the exec follower: a Go program it executes is
// watched afresh, as a new session; any other program ends the watch.
func (w *watcher) watchPID(pid int, duration time.Duration, sigs <-chan os.Signal) (Stop, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return StopFailed, badInput(fmt.Errorf("no process with pid %d (it exited, or never existed)", pid))
	}
	if err != nil {
		return StopFailed, fmt.Errorf("open pid %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	// The exec follower (some 40 ms to load) is made while the binary is
	// inspected, and watches the process before the probes go in: an exec
	// while they do is reported too. The tracepoint needs BTF, which --pid
	// can do without: then an exec goes unnoticed, and the user is told so.
	type made struct {
		f   *follow.Follower
		err error
	}
	fch := make(chan made, 1)
	go func() {
		f, err := follow.New(follow.Options{})
		fch <- made{f, err}
	}()
	var (
		f        *follow.Follower
		ferr     error
		followed bool
	)
	startFollowing := func() {
		m := <-fch
		f, ferr = m.f, m.err
		if ferr == nil {
			ferr = f.Watch(pid)
		}
		if ferr != nil {
			w.warn.Printf("pid %d: an exec of another program will not be noticed: %v", pid, ferr)
		}
		followed = true
	}
	started := startTime(pid)
	// Whether the process was still there when the probes went in, decided
	// then: checked later, a process that exited after the attach (and
	// whose pid another took) would be taken for one that exited during it.
	liveAtAttach := false
	aerr := w.attachAfter(pid, startFollowing, func() {
		liveAtAttach = started != 0 && !exited(pidfd) && startTime(pid) == started
	})
	if !followed { // attach failed before the probes
		startFollowing()
	}
	if f != nil {
		defer f.Close()
		if ferr != nil {
			f = nil
		}
	}
	execs := make(chan uint64, 1) // when it executed
	go func() {
		if f == nil {
			return
		}
		err := f.Run(func(ex follow.Exec) {
			if ex.PID == pid {
				select {
				case execs <- ex.At:
				default: // one pending is enough: the newest program is read then
				}
			}
		})
		if err != nil {
			w.log.Print(err)
		}
	}()

	// Exited: after the probes were in (its summary follows, as for any
	// exit), or before, when the pid may name another process by now,
	// which the probes may have gone into: out with them.
	if exited(pidfd) && (aerr != nil || !liveAtAttach) {
		w.execd(pid, follow.Now())
		return StopFailed, badInput(fmt.Errorf("pid %d exited while ctxwatch was attaching: not watched", pid))
	}
	if aerr != nil {
		return StopFailed, aerr
	}
	// --duration is how long the process is watched: count it from
	// the attach, which takes seconds on a slow machine (under TCG,
	// vmtest saw --duration 2s end before the probes were in).
	var timeout <-chan time.Time
	if duration > 0 {
		timeout = time.After(duration)
	}
	gone := make(chan struct{})
	go func() { waitPidfd(pidfd); close(gone) }()
	for {
		select {
		case <-gone:
			w.warn.Printf("pid %d exited", pid)
			return StopExited, nil
		case at := <-execs:
			if exited(pidfd) {
				// The exec of a process that took the pid after it: the
				// exec follower knows pids, the pidfd knows the process.
				w.warn.Printf("pid %d exited", pid)
				return StopExited, nil
			}
			path, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
			// Its probes and goroutine states belong to the old program.
			if w.execd(pid, at) {
				continue // attached after the exec: to the new program
			}
			err := w.attach(pid)
			switch {
			case exited(pidfd):
				w.warn.Printf("pid %d executed %s and exited", pid, path)
				w.execd(pid, follow.Now())
				return StopExited, nil
			case err == nil:
				w.warn.Printf("pid %d executed %s: watching the new program", pid, path)
			case errors.Is(err, target.ErrNotGo) || errors.Is(err, errSkipped):
				w.warn.Printf("pid %d executed %s: stopped watching (not a Go program to watch)", pid, path)
				return StopUnwatchable, nil
			default:
				return StopFailed, fmt.Errorf("pid %d executed %s: stopped watching: %w", pid, path, err)
			}
		case <-sigs:
			return StopSignal, nil
		case <-timeout:
			return StopDuration, nil
		}
	}
}

// startTime is when process pid started (clock ticks since boot), or 0
// if there is no such process: a pid taken again has another.
func startTime(pid int) uint64 {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := statFields(stat)
	if len(f) < 20 {
		return 0
	}
	t, _ := strconv.ParseUint(f[19], 10, 64) // starttime, field 22
	return t
}

// exited reports whether the process of pidfd has exited.
func exited(pidfd int) bool {
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0
}

// waitExit returns when process pid has exited.
func waitExit(pid int) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		for unix.Kill(pid, 0) == nil {
			time.Sleep(100 * time.Millisecond)
		}
		return
	}
	defer unix.Close(fd)
	waitPidfd(fd)
}

// waitPidfd returns when the process of pidfd has exited.
func waitPidfd(pidfd int) {
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(fds, -1); !errors.Is(err, unix.EINTR) {
			return
		}
	}
}
