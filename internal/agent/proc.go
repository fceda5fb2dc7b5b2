package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Capability numbers (linux/capability.h).
const (
	capKill      = 5
	capSysPtrace = 19
	capSysAdmin  = 21
	capPerfmon   = 38
	capBPF       = 39
)

// missingCaps names the capabilities ctxwatch lacks to load eBPF programs,
// attach uprobes, read another process's executable and, with stops, stop
// and resume the processes it starts (-- CMD; ctxwatch node stops nothing).
func missingCaps(stops bool) ([]string, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return nil, fmt.Errorf("read own capabilities: %w", err)
	}
	defer f.Close()
	var eff uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			eff, err = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return nil, fmt.Errorf("parse CapEff %q: %w", v, err)
			}
		}
	}
	has := func(c uint) bool { return eff&(1<<c) != 0 }
	var missing []string
	// Uprobes need CAP_SYS_ADMIN since the 2025 fix "perf: Require
	// CAP_SYS_ADMIN for uprobes" (in the stable kernels from 5.10 on), so
	// that is what to grant. Before it, CAP_BPF and CAP_PERFMON together
	// sufficed: a holder of both is let through, and attaching says so if
	// its kernel wants CAP_SYS_ADMIN.
	if !has(capSysAdmin) && !(has(capBPF) && has(capPerfmon)) {
		missing = append(missing, "CAP_SYS_ADMIN")
	}
	if !has(capSysPtrace) {
		missing = append(missing, "CAP_SYS_PTRACE")
	}
	if stops && !has(capKill) {
		missing = append(missing, "CAP_KILL")
	}
	return missing, nil
}

// checkPID says in one line why pid cannot be watched, before anything
// tries: a process that does not exist, has exited, or is a kernel thread.
func checkPID(pid int) error {
	if pid <= 0 {
		return fmt.Errorf("--pid %d: not a process id", pid)
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("no process with pid %d (it exited, or never existed)", pid)
	}
	if err == nil {
		state, flags, ok := parseStat(stat)
		switch {
		case ok && flags&pfKthread != 0:
			return fmt.Errorf("pid %d has no executable to watch: a kernel thread", pid)
		case ok && (state == 'Z' || state == 'X'):
			return fmt.Errorf("pid %d has exited (its parent has not reaped it yet): there is nothing left to watch", pid)
		}
	}
	if _, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("pid %d has no executable to watch: a kernel thread, or a process that is exiting", pid)
	}
	return nil
}

// pfKthread is PF_KTHREAD (linux/sched.h) in the flags of /proc/PID/stat.
const pfKthread = 0x00200000

// parseStat returns the state and the flags of a /proc/PID/stat line.
func parseStat(stat []byte) (state byte, flags uint64, ok bool) {
	f := statFields(stat)
	if len(f) < 7 || len(f[0]) != 1 {
		return 0, 0, false
	}
	flags, err := strconv.ParseUint(f[6], 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], flags, true
}

// statFields splits a /proc/PID/stat line into its fields from the third
// on (state is [0]): the command name before them, in parentheses, may
// itself hold spaces and parentheses, so they start after the last ')'.
func statFields(stat []byte) []string {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(stat[i+1:]))
}
