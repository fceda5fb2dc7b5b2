package uprobe

import (
	"bufio"
	"debug/elf"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// LoadBias returns how far process pid loaded its executable from the
// addresses it was linked at: zero unless it is PIE. It finds the mapping of
// the executable's first PT_LOAD segment in /proc/PID/maps.
func LoadBias(pid int, ef *elf.File) (uint64, error) {
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
