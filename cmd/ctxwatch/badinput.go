package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/ctxwatch/ctxwatch/internal/target"
)

// errBadInput marks an error about what ctxwatch was pointed at or the
// environment it cannot work in (not a Go program, a pid that is gone,
// missing privileges, a kernel without a feature): exit status 2, as for
// a usage error, where 1 means ctxwatch itself failed.
var errBadInput = errors.New("bad input")

// inputError is an error marked as bad input; its text is the error's own.
type inputError struct{ err error }

func (e inputError) Error() string   { return e.err.Error() }
func (e inputError) Unwrap() []error { return []error{e.err, errBadInput} }

// badInput marks err as bad input (nil stays nil).
func badInput(err error) error {
	if err == nil {
		return nil
	}
	return inputError{err}
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
	return fmt.Errorf("start %s: it is a Go program for %s (%s), which this machine cannot run: %w: ctxwatch attaches to amd64 programs only",
		path, bin.Arch, bin.GoVersion, target.ErrArch)
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

// parseQuiet parses args with fs. The flag package prints a parse error
// with the whole usage after it; run prints the error in one line with a
// hint instead, so the usage is shown only for -help.
func parseQuiet(fs *flag.FlagSet, args []string) error {
	usage, out := fs.Usage, fs.Output()
	fs.Usage = func() {}
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.Usage = usage
	fs.SetOutput(out)
	if errors.Is(err, flag.ErrHelp) {
		usage()
	}
	return err
}
