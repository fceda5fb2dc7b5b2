package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// --- the node agent ---

// nodeBench runs ctxwatch node over 20 idle Go services, once as replicas
// of one executable and once as 20 executables: the agent's CPU and memory
// while they idle (what a DaemonSet's requests and limits must cover), and
// how long a process started next waits for its probes.
func (b *bench) nodeBench(ctx context.Context, service string, idle time.Duration) (string, error) {
	var out strings.Builder
	out.WriteString("`ctxwatch node --match 'svc-*'` (default --overhead-budget 5) over 20 idle copies of bench/service, " +
		"measured for " + idle.String() + " after the agent's scan. BPF maps: the memory of the agent's maps " +
		"(fdinfo memlock), which the kernel charges to the agent's cgroup from Linux 5.11 on: a DaemonSet's " +
		"memory limit must cover it. A new process: from before its exec to the agent's log line saying it is watched, " +
		"median of 5.\n\n")
	out.WriteString("| processes | agent CPU (% of a core) | agent RSS | agent peak RSS | BPF maps | new replica watched after | new executable watched after |\n")
	out.WriteString("|---|---|---|---|---|---|---|\n")
	for _, distinct := range []bool{false, true} {
		row, err := b.nodeOnce(ctx, service, distinct, idle)
		if err != nil {
			return "", err
		}
		out.WriteString(row)
	}
	return out.String(), nil
}

func (b *bench) nodeOnce(ctx context.Context, service string, distinct bool, idle time.Duration) (string, error) {
	dir, err := os.MkdirTemp(filepath.Dir(b.target), "node-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	exe := func(i int) string {
		if distinct {
			return filepath.Join(dir, fmt.Sprintf("svc-%02d", i))
		}
		return filepath.Join(dir, "svc-replica")
	}
	var procs []*exec.Cmd
	defer func() {
		for _, p := range procs {
			p.Process.Kill()
			p.Wait()
		}
	}()
	startService := func(path string) (time.Time, int, error) {
		if _, err := os.Stat(path); err != nil {
			if err := copyExe(service, path); err != nil {
				return time.Time{}, 0, err
			}
		}
		cmd := exec.CommandContext(ctx, path)
		cmd.Stdout = io.Discard
		t0 := time.Now()
		if err := cmd.Start(); err != nil {
			return t0, 0, err
		}
		procs = append(procs, cmd)
		return t0, cmd.Process.Pid, nil
	}
	for i := range 20 {
		if _, _, err := startService(exe(i)); err != nil {
			return "", err
		}
	}
	cw := exec.CommandContext(ctx, b.ctxwatch, "node", "--match", "svc-*", "--verbose", "--output", os.DevNull, "--metrics-addr", "")
	logs := &logWatch{seen: map[string]time.Time{}}
	stderr, err := cw.StderrPipe()
	if err != nil {
		return "", err
	}
	if err := cw.Start(); err != nil {
		return "", err
	}
	defer func() { cw.Process.Kill(); cw.Wait() }()
	go logs.read(stderr)
	if !logs.wait("processes watched after the scan", 2*time.Minute) {
		return "", fmt.Errorf("ctxwatch node did not finish its scan:\n%s", logs.text())
	}
	if n := logs.count(watched); n != 20 {
		return "", fmt.Errorf("ctxwatch node watches %d of 20 processes:\n%s", n, logs.text())
	}
	cpu0, _ := procCPU(cw.Process.Pid)
	t0 := time.Now()
	time.Sleep(idle)
	cpu1, _ := procCPU(cw.Process.Pid)
	cpuPct := 100 * float64(cpu1-cpu0) / float64(time.Since(t0))
	rss, _ := procStatus(cw.Process.Pid, "VmRSS:")
	hwm, _ := procStatus(cw.Process.Pid, "VmHWM:")
	maps := mapMemory(cw.Process.Pid)

	// New processes: a replica of an executable already watched joins its
	// probes; a new executable is inspected and gets its own.
	var replica, fresh []float64
	for i := range 5 {
		for _, newExe := range []bool{false, true} {
			path := exe(0)
			if newExe {
				path = filepath.Join(dir, fmt.Sprintf("svc-new-%d", i))
			}
			start, pid, err := startService(path)
			if err != nil {
				return "", err
			}
			at, ok := logs.waitPID(pid, 30*time.Second)
			if !ok {
				return "", fmt.Errorf("pid %d (%s) not watched within 30s:\n%s", pid, path, logs.text())
			}
			ms := float64(at.Sub(start)) / float64(time.Millisecond)
			if newExe {
				fresh = append(fresh, ms)
			} else {
				replica = append(replica, ms)
			}
		}
	}
	what := "20 replicas of one executable"
	if distinct {
		what = "20 executables"
	}
	return fmt.Sprintf("| %s | %.2f%% | %.1f MB | %.1f MB | %.1f MB | %.0f ms | %.0f ms |\n",
		what, cpuPct, float64(rss)/1024, float64(hwm)/1024, float64(maps)/(1<<20), median(replica), median(fresh)), nil
}

var watched = regexp.MustCompile(`pid (\d+) \([^)]*\) watched`)

// logWatch reads ctxwatch node's JSON logs and notes when each pid was
// logged as watched, by the log record's own time.
type logWatch struct {
	mu   sync.Mutex
	all  strings.Builder
	seen map[string]time.Time // pid -> when logged as watched
}

func (l *logWatch) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var rec struct {
			Time time.Time `json:"time"`
			Msg  string    `json:"msg"`
		}
		line := sc.Text()
		_ = json.Unmarshal([]byte(line), &rec)
		l.mu.Lock()
		l.all.WriteString(line + "\n")
		if m := watched.FindStringSubmatch(rec.Msg); m != nil {
			l.seen[m[1]] = rec.Time
		}
		l.mu.Unlock()
	}
}

func (l *logWatch) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.all.String()
}

func (l *logWatch) count(re *regexp.Regexp) int {
	return len(re.FindAllString(l.text(), -1))
}

func (l *logWatch) wait(s string, d time.Duration) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if strings.Contains(l.text(), s) {
			return true
		}
	}
	return false
}

func (l *logWatch) waitPID(pid int, d time.Duration) (time.Time, bool) {
	key := strconv.Itoa(pid)
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		l.mu.Lock()
		at, ok := l.seen[key]
		l.mu.Unlock()
		if ok {
			return at, true
		}
	}
	return time.Time{}, false
}

// procStatus reads a kB field of /proc/PID/status.
func procStatus(pid int, field string) (uint64, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, field); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb, err == nil
		}
	}
	return 0, false
}

// mapMemory sums the memory of the BPF maps process pid holds, as the
// kernel accounts it (fdinfo's memlock), each map once.
func mapMemory(pid int) uint64 {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fdinfo", pid))
	seen := map[string]bool{}
	var total uint64
	for _, e := range ents {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, e.Name()))
		if err != nil || !strings.Contains(string(data), "map_type:") {
			continue
		}
		var id string
		var mem uint64
		for line := range strings.Lines(string(data)) {
			if v, ok := strings.CutPrefix(line, "map_id:"); ok {
				id = strings.TrimSpace(v)
			}
			if v, ok := strings.CutPrefix(line, "memlock:"); ok {
				mem, _ = strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			}
		}
		if id == "" || seen[id] {
			continue
		}
		seen[id] = true
		total += mem
	}
	return total
}

func copyExe(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, data, 0o755)
}
