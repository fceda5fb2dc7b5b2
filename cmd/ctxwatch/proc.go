package main

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
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
// attach uprobes, read another process's executable and stop and resume the
// processes it starts.
func missingCaps() ([]string, error) {
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
	if !has(capSysAdmin) {
		if !has(capBPF) {
			missing = append(missing, "CAP_BPF")
		}
		if !has(capPerfmon) {
			missing = append(missing, "CAP_PERFMON")
		}
	}
	if !has(capSysPtrace) {
		missing = append(missing, "CAP_SYS_PTRACE")
	}
	if !has(capKill) {
		missing = append(missing, "CAP_KILL")
	}
	return missing, nil
}

// checkPID says in one line why pid cannot be watched, before anything
// tries: a process that does not exist, or a kernel thread (no executable).
func checkPID(pid int) error {
	if pid <= 0 {
		return fmt.Errorf("--pid %d: not a process id", pid)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no process with pid %d (it exited, or never existed)", pid)
	}
	if _, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); errors.Is(err, fs.ErrNotExist) {
		// /proc/PID is there but has no executable: a kernel thread, or a
		// process exiting right now.
		return fmt.Errorf("pid %d has no executable to watch: a kernel thread, or a process that is exiting", pid)
	}
	return nil
}
