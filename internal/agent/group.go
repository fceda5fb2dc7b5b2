package agent

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/ctxwatch/ctxwatch/internal/target"
	"github.com/ctxwatch/ctxwatch/internal/uprobe"
)

// exeKey identifies an executable file. Uprobes belong to a file, not to
// a process: the processes running one file can share one set.
type exeKey struct{ dev, ino uint64 }

// exeKeyOf identifies the file process pid runs, through /proc/PID/exe,
// which reaches it in the process's mount namespace, deleted or not.
func exeKeyOf(pid int) (exeKey, error) {
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/exe", pid), &st); err != nil {
		return exeKey{}, fmt.Errorf("stat the executable of pid %d: %w", pid, err)
	}
	return exeKey{dev: st.Dev, ino: st.Ino}, nil
}

// group is what the watched processes of one executable share in node
// mode: one program with its pid map, one uprobe per probe point, one
// binary to symbolize their events, and the overhead budget's duty cycle.
// Only non-PIE executables are shared: every process of one sits at the
// same addresses, which the program's configuration holds. PIE processes
// (each at its own address) get probes of their own, as with --pid.
type group struct {
	key    exeKey
	probes *uprobe.Probes
	points []uprobe.Point
	bin    *target.Binary
	name   string // the executable's path, as the first process saw it
	notes  []string
	cycle  *dutyCycle // nil without --overhead-budget

	first int // the process whose inspection made the group, for logs
	// The sessions using the group, under watcher.mu. The probes are
	// attached (and re-attached after a duty cycle's pause) through the
	// binary's own open file, which outlives every member.
	members map[*session]bool
}

// leave removes s from g, under watcher.mu. It returns true when s was the
// last member: the caller closes the group.
func (g *group) leave(s *session) bool {
	delete(g.members, s)
	return len(g.members) == 0
}

// close detaches and unloads the group's probes.
func (g *group) close() error {
	g.cycle.halt()
	err := g.probes.Close()
	g.bin.Close()
	return err
}
