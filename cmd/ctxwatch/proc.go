package main

import (
	"bufio"
	"debug/elf"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// loadBias returns how far process pid loaded its executable from the
// addresses it was linked at: zero unless it is PIE. It finds the mapping of
// the executable's first PT_LOAD segment in /proc/PID/maps.
func loadBias(pid int, ef *elf.File) (uint64, error) {
	if ef.Type != elf.ET_DYN {
		return 0, nil
	}
	var first *elf.Prog
	for _, p := range ef.Progs {
		if p.Type == elf.PT_LOAD {
			first = p
			break
		}
	}
	if first == nil {
		return 0, fmt.Errorf("no PT_LOAD segment")
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return 0, fmt.Errorf("find executable of process %d: %w", pid, err)
	}
	exe = strings.TrimSuffix(exe, " (deleted)")
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return 0, fmt.Errorf("read mappings of process %d: %w", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || strings.TrimSuffix(strings.Join(fields[5:], " "), " (deleted)") != exe {
			continue
		}
		off, err1 := strconv.ParseUint(fields[2], 16, 64)
		start, _, _ := strings.Cut(fields[0], "-")
		addr, err2 := strconv.ParseUint(start, 16, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		if off == first.Off&^0xfff {
			return addr - (first.Vaddr &^ 0xfff), nil
		}
	}
	return 0, fmt.Errorf("executable %s not mapped in process %d", exe, pid)
}

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
