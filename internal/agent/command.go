package agent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ctxwatch/ctxwatch/internal/follow"
	"github.com/ctxwatch/ctxwatch/internal/target"
)

// runCommand starts cmd with every Go program it executes (itself
// included) stopped at exec until its probes are in place.
// It returns the command's exit status.
func (w *watcher) runCommand(args []string, sigs <-chan os.Signal, timeout <-chan time.Time) (int, error) {
	f, err := follow.New(follow.Options{})
	if err != nil {
		return 0, fmt.Errorf("follow the processes of %s: %w", args[0], err)
	}
	defer f.Close()
	if err := f.Add(os.Getpid()); err != nil {
		return 0, err
	}
	var unwatched atomic.Int64 // Go programs that ran without probes
	go func() {
		err := f.Run(func(ex follow.Exec) {
			if ex.PID == os.Getpid() {
				return
			}
			if err := w.attach(ex.PID); err != nil {
				// Programs that are not Go and the Go toolchain are
				// expected; a Go program that cannot be watched is news.
				if errors.Is(err, target.ErrNotGo) || errors.Is(err, errSkipped) {
					w.log.Printf("pid %d not watched: %v", ex.PID, err)
				} else {
					w.warn.Printf("pid %d not watched: %v", ex.PID, err)
					unwatched.Add(1)
				}
			}
			if ex.Stopped {
				if err := follow.Resume(ex.PID); err != nil {
					w.log.Print(err)
				}
			}
		})
		if err != nil {
			w.log.Print(err)
		}
	}()

	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return 0, badInput(startError(cmd.Path, err))
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var werr error
	for done := false; !done; {
		select {
		case werr = <-waited:
			done = true
		case sig := <-sigs:
			// The terminal sends Ctrl-C to the command too; pass on the
			// rest, and report once it has exited.
			if sig != os.Interrupt {
				_ = cmd.Process.Signal(sig)
			}
		case <-timeout:
			timeout = nil
			w.log.Printf("--duration reached: the command keeps running unwatched")
			w.detachAll()
		}
	}
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(werr, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		} else {
			code = ee.ExitCode()
		}
	case werr != nil:
		return 0, fmt.Errorf("wait for %s: %w", args[0], werr)
	}
	// A gate must not pass because nothing was watched.
	if n := unwatched.Load(); n > 0 && code == 0 {
		return 0, fmt.Errorf("%d Go program(s) ran unwatched (see above)", n)
	}
	return code, nil
}

// startError explains why the command could not be started. The kernel
// says only "exec format error" for a program of another architecture:
// when that program is Go, say which it is.
func startError(path string, err error) error {
	err = fmt.Errorf("start %s: %w", path, err)
	if !errors.Is(err, syscall.ENOEXEC) {
		return err
	}
	bin, ierr := target.Open(path)
	if ierr != nil {
		if errors.Is(ierr, target.ErrArch) {
			return fmt.Errorf("start %s: %w", path, ierr)
		}
		if head, rerr := readHead(path, 4); rerr == nil && string(head) != "\x7fELF" {
			return fmt.Errorf("%w (not an ELF executable, and no #! line)", err)
		}
		return err
	}
	defer bin.Close()
	return fmt.Errorf("start %s: it is a Go program for %s (%s), which this machine cannot run: %w: ctxwatch for %s attaches to %s programs only",
		path, bin.Arch, bin.GoVersion, target.ErrArch, runtime.GOARCH, runtime.GOARCH)
}

// readHead returns the first n bytes of the file at path (fewer if it is
// shorter).
func readHead(path string, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	n, err = io.ReadFull(f, b)
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		err = nil
	}
	return b[:n], err
}
