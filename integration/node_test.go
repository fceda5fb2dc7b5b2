package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/ctxwatch/ctxwatch/internal/uprobe"
)

// pod is a container of a Kubernetes pod, as the kubelet lays out its
// cgroup: the identity ctxwatch node must read back.
type pod struct {
	uid, container string
	dir            string // its cgroup directory
}

// TestNode runs ctxwatch node over processes placed in kubelet-shaped
// cgroups, some started after it and one in a mount namespace of its own,
// and checks what a cluster operator would: each Go process found and
// tagged with its container and pod, replicas sharing one set of uprobes,
// exact breaks per process, exits released, and a clean SIGTERM.
func TestNode(t *testing.T) {
	requireRoot(t)
	v2 := cgroup2Root(t)
	// cgroup v1 too: a named hierarchy (no controller) can be mounted on
	// any kernel next to v2; the kubelet's cgroupfs layout goes there.
	v1 := t.TempDir()
	if err := syscall.Mount("cgroup", v1, "cgroup", 0, "none,name=ctxwatchtest"); err != nil {
		t.Fatalf("mount a cgroup v1 hierarchy: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(v1, syscall.MNT_DETACH) })

	uid := func(n int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", n, n) }
	cid := func(n int) string { return strings.Repeat(fmt.Sprintf("%x", n), 64)[:64] }
	us := func(u string) string { return strings.ReplaceAll(u, "-", "_") }
	podA := pod{uid: uid(0xa), container: cid(0xa)} // containerd, systemd driver, v2
	podA.dir = mkCgroup(t, v2, "kubepods.slice", "kubepods-burstable.slice",
		"kubepods-burstable-pod"+us(podA.uid)+".slice", "cri-containerd-"+podA.container+".scope")
	podB := pod{uid: uid(0xb), container: cid(0xb)} // cgroupfs driver, v1
	podB.dir = mkCgroup(t, v1, "kubepods", "besteffort", "pod"+podB.uid, podB.container)
	podC := pod{uid: uid(0xc), container: cid(0xc)} // CRI-O, systemd driver, v2
	podC.dir = mkCgroup(t, v2, "kubepods.slice", "kubepods-pod"+us(podC.uid)+".slice", "crio-"+podC.container+".scope")

	// Executables named cw-* so that --match leaves the machine's other
	// Go programs alone: twenty replicas of one file, a copy of it (another
	// file, deleted once started), one that --exclude names, a program
	// that is not Go, and ctxwatch itself.
	dir := t.TempDir()
	replica, solo, notGo, self := filepath.Join(dir, "cw-waiter"), filepath.Join(dir, "cw-solo"),
		filepath.Join(dir, "cw-notgo"), filepath.Join(dir, "cw-ctxwatch")
	excluded := filepath.Join(dir, "cw-skipped")
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	if sleep, err = filepath.EvalSymlinks(sleep); err != nil { // busybox in the VM
		t.Fatal(err)
	}
	for from, to := range map[string]string{filepath.Join(bin, "waiter"): replica, sleep: notGo, filepath.Join(bin, "ctxwatch"): self} {
		if err := copyFile(from, to); err != nil {
			t.Fatal(err)
		}
	}
	for _, to := range []string{solo, excluded} {
		if err := copyFile(replica, to); err != nil {
			t.Fatal(err)
		}
	}

	type proc struct {
		cmd     *exec.Cmd
		stdin   io.WriteCloser
		ready   <-chan string
		pod     pod
		started time.Time
		later   bool // started after ctxwatch
		isReady bool
	}
	var procs []*proc
	later := false
	start := func(p pod, exe string, ownMountNS bool) *proc {
		t.Helper()
		pr := &proc{pod: p, started: time.Now(), later: later}
		pr.cmd, pr.stdin, pr.ready = startInPod(t, p, exe, ownMountNS)
		procs = append(procs, pr)
		return pr
	}
	waitReady := func() {
		for _, p := range procs {
			if p.isReady {
				continue
			}
			p.isReady = true
			select {
			case l := <-p.ready:
				if l != "ready" {
					t.Fatalf("pid %d said %q, want ready", p.cmd.Process.Pid, l)
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("pid %d not ready", p.cmd.Process.Pid)
			}
		}
	}
	// Before ctxwatch: 18 replicas and the copy in pod A, the non-Go
	// program in pod A, one replica in pod B.
	for range 18 {
		start(podA, replica, false)
	}
	soloProc := start(podA, solo, false)
	start(podB, replica, false)
	skipped, _, _ := startInPod(t, podA, excluded, false)
	sleeper := exec.Command(notGo, "300")
	sleeper.Args[0] = "sleep" // busybox picks the applet by name
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
	waitReady()
	if err := os.Remove(solo); err != nil { // watched all the same, through /proc/PID/exe
		t.Fatal(err)
	}

	out := filepath.Join(t.TempDir(), "report.json")
	metrics := freePorts(t, 1)[0]
	cw := exec.Command(self, "node", "--match", "cw-*", "--exclude", "cw-skip*", "--trace-key", "type=main.traceKey", "--verbose",
		"--overhead-budget", "0", "--output", out, "--metrics-addr", metrics)
	cw.Env = append(os.Environ(), "NODE_NAME=node-7")
	stderr := &syncBuffer{}
	cw.Stderr = stderr
	if err := cw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cw.Process.Kill() })
	waitFor(t, "the node scan", 60*time.Second, func() bool {
		return strings.Contains(stderr.String(), "processes watched after the scan")
	})

	// After ctxwatch: pod C's program, copied into a tmpfs of its own
	// mount namespace (the host has no such file), and two more replicas.
	// Pod C's is a new executable, inspected for tens of milliseconds (or
	// seconds under TCG) while the replicas' shells execute the waiter:
	// their exec events are read after the new program already runs, and
	// must not end the watch of the process found through them.
	later = true
	podCProc := start(podC, replica, true)
	waitFor(t, "pod C's shell to execute the waiter", 10*time.Second, func() bool {
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", podCProc.cmd.Process.Pid))
		return filepath.Base(exe) == "cw-waiter"
	})
	start(podA, replica, false)
	start(podA, replica, false)
	// Each Go process found: by the scan, or within 2 s of its start
	// (waitFor stretches that under TCG emulation, CTXWATCH_TEST_SLOW).
	for _, p := range procs {
		pid := p.cmd.Process.Pid
		end := time.Now() // found by the scan: watched already
		if p.later {
			end = p.started.Add(slowed(2 * time.Second))
		}
		waitUntil(t, fmt.Sprintf("pid %d to be watched", pid), end, func() bool {
			return watchedRE(pid).MatchString(stderr.String())
		}, stderr.String)
	}
	waitReady()
	logs := stderr.String()
	for _, pid := range []int{cw.Process.Pid, sleeper.Process.Pid, skipped.Process.Pid} {
		if watchedRE(pid).MatchString(logs) {
			t.Errorf("pid %d (ctxwatch itself, not a Go program, or excluded) was watched:\n%s", pid, logs)
		}
	}

	// One uprobe per probe point and executable: 21 processes of
	// cw-waiter share theirs, cw-solo and pod C's copy have their own.
	m := regexp.MustCompile(`watching pid \d+ .*?: (\d+) probes"`).FindAllStringSubmatch(logs, -1)
	if len(m) != 3 {
		t.Fatalf("want 3 sets of probes placed (cw-waiter, cw-solo, pod C's copy), got %d:\n%s", len(m), logs)
	}
	perSet, _ := strconv.Atoi(m[0][1])
	if got := uprobesHeld(t, cw.Process.Pid); got != 3*perSet {
		t.Errorf("ctxwatch holds %d uprobes for %d processes; want %d (3 executables × %d probes)", got, len(procs), 3*perSet, perSet)
	}

	// Work: each process loses its trace units times.
	const units = 3
	for _, p := range procs {
		for range units {
			fmt.Fprintln(p.stdin, "go")
		}
	}
	// cw-solo exits: its summary comes now, and its probes go.
	soloProc.stdin.Close()
	if err := soloProc.cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the summary of the exited process", 10*time.Second, func() bool {
		_, sums := readNodeReport(t, out)
		return len(sums[soloProc.cmd.Process.Pid]) > 0
	})
	waitFor(t, "cw-solo's probes to go", 10*time.Second, func() bool { return uprobesHeld(t, cw.Process.Pid) == 2*perSet })

	// Metrics and health, as the DaemonSet's probes and Prometheus see them.
	var body string
	waitForOr(t, "break metrics with the pod", 10*time.Second, func() bool {
		body = httpGet(t, "http://"+metrics+"/metrics")
		return strings.Contains(body, `container_id="`+podA.container+`"`) && strings.Contains(body, `k8s_pod_uid="`+podC.uid+`"`)
	}, func() string { return fmt.Sprintf("/metrics:\n%s\nlogs:\n%s", body, stderr) })
	if body := httpGet(t, "http://"+metrics+"/healthz"); strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz: %q", body)
	}

	// Everyone's work done (each waiter answers a line per unit), then SIGTERM.
	for _, p := range procs {
		if p != soloProc {
			p.stdin.Close()
			p.cmd.Wait()
		}
	}
	time.Sleep(200 * time.Millisecond) // the last events into the ring
	cw.Process.Signal(syscall.SIGTERM)
	if err := cw.Wait(); err != nil {
		t.Fatalf("ctxwatch node after SIGTERM: %v\n%s", err, stderr.String())
	}
	for _, p := range procs {
		if n := len(watchedRE(p.cmd.Process.Pid).FindAllString(stderr.String(), -1)); n != 1 {
			t.Errorf("pid %d watched %d times, want once (it executed one Go program):\n%s", p.cmd.Process.Pid, n, stderr)
		}
	}
	// Logs are JSON, one object per line.
	for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		var v map[string]any
		if err := json.Unmarshal([]byte(l), &v); err != nil || v["msg"] == nil {
			t.Errorf("log line is not a JSON object with a msg: %q", l)
		}
	}

	breaks, sums := readNodeReport(t, out)
	src, _ := filepath.Abs("testdata/waiter/main.go")
	marks := sourceMarkers(t, src)
	for _, p := range procs {
		pid := p.cmd.Process.Pid
		b := breaks[pid]
		if len(b) != 1 || len(sums[pid]) != 1 {
			t.Errorf("pid %d: want one break line and one summary, got %d breaks, %d summaries", pid, len(b), len(sums[pid]))
			continue
		}
		s := sums[pid][0]
		if b[0].ContainerID != p.pod.container || b[0].PodUID != p.pod.uid || s.ContainerID != p.pod.container || s.PodUID != p.pod.uid {
			t.Errorf("pid %d: break in container %q pod %q, summary %q %q; want %q %q", pid,
				b[0].ContainerID, b[0].PodUID, s.ContainerID, s.PodUID, p.pod.container, p.pod.uid)
		}
		if b[0].Kind != "lost-at-spawn" || marks[b[0].Site.Line] != (marker{"site", "lost-at-spawn"}) {
			t.Errorf("pid %d: break %+v, want lost-at-spawn at the marked line", pid, b[0])
		}
		if len(s.SpawnSites) != 1 || s.SpawnSites[0].TracedSpawns != units || s.SpawnSites[0].Lost != units ||
			marks[s.SpawnSites[0].Site.Line] != (marker{"spawn", "lost-at-spawn"}) {
			t.Errorf("pid %d: spawn sites %+v, want %d traced and lost at the marked line", pid, s.SpawnSites, units)
		}
		if s.EventsLost == nil || *s.EventsLost != 0 {
			t.Errorf("pid %d: events_lost %v", pid, s.EventsLost)
		}
	}
	if len(sums) != len(procs) {
		t.Errorf("%d summaries for %d Go processes", len(sums), len(procs))
	}
}

var watchedLine = `pid %d \(.*?\) watched`

func watchedRE(pid int) *regexp.Regexp { return regexp.MustCompile(fmt.Sprintf(watchedLine, pid)) }

// cgroup2Root returns where cgroup v2 is mounted, mounting it if it is not.
func cgroup2Root(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) > 2 && f[2] == "cgroup2" {
			return f[1]
		}
	}
	dir := t.TempDir()
	if err := syscall.Mount("cgroup2", dir, "cgroup2", 0, ""); err != nil {
		t.Fatalf("mount cgroup v2: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// mkCgroup makes the cgroup root/parts..., removed at the end of the test.
func mkCgroup(t *testing.T, root string, parts ...string) string {
	t.Helper()
	dir := root
	for _, p := range parts {
		dir = filepath.Join(dir, p)
		if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
		d := dir
		// Cleanups run last-in first-out: innermost first, once its
		// processes are gone.
		t.Cleanup(func() {
			for i := 0; i < 50 && os.Remove(d) != nil && !os.IsNotExist(os.Remove(d)); i++ {
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
	return dir
}

// startInPod starts exe (a waiter) in the cgroup of p, through a shell that
// moves itself there and then executes it; with ownMountNS, in a mount
// namespace of its own, from a tmpfs that only that namespace sees.
func startInPod(t *testing.T, p pod, exe string, ownMountNS bool) (*exec.Cmd, io.WriteCloser, <-chan string) {
	t.Helper()
	run := exe
	script := `echo $$ > "$1/cgroup.procs" || exit 1; exec "$2"`
	var attr *syscall.SysProcAttr
	if ownMountNS {
		hidden := t.TempDir()
		run = filepath.Join(hidden, "cw-waiter")
		script = `echo $$ > "$1/cgroup.procs" || exit 1; mount -t tmpfs tmpfs "$3" && cp "$4" "$2" && exec "$2"`
		attr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	}
	cmd := exec.Command("sh", "-c", script, "sh", p.dir, run, filepath.Dir(run), exe)
	cmd.SysProcAttr = attr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// The first line, "ready", is passed on; the rest are read and dropped.
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case ready <- sc.Text():
			default:
			}
		}
	}()
	return cmd, stdin, ready
}

// uprobesHeld counts the uprobes process pid holds: a perf event each, or
// with uprobe_multi links (Linux 6.6) the count of each link's info (its
// fdinfo names the link; 6.12's does not say the count).
func uprobesHeld(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		switch {
		case err != nil:
		case l == "anon_inode:[perf_event]":
			n++
		case l == "anon_inode:bpf_link":
			fdinfo, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, e.Name()))
			if err != nil || !strings.Contains(string(fdinfo), "link_type:\tuprobe_multi") {
				continue // closed meanwhile, or another kind of link
			}
			var id int
			for line := range strings.Lines(string(fdinfo)) {
				if v, ok := strings.CutPrefix(line, "link_id:"); ok {
					id, _ = strconv.Atoi(strings.TrimSpace(v))
				}
			}
			lk, err := link.NewFromID(link.ID(id))
			if err != nil {
				continue // closed meanwhile
			}
			info, err := lk.Info()
			lk.Close()
			if err != nil {
				t.Fatalf("info of uprobe_multi link %d: %v", id, err)
			}
			if um := info.UprobeMulti(); um != nil {
				n += int(um.Count)
			}
		}
	}
	return n
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return string(body)
}

type nodeBreak struct {
	breakLine
	ContainerID string `json:"container_id"`
	PodUID      string `json:"pod_uid"`
}

type nodeSummary struct {
	summaryLine
	ContainerID string `json:"container_id"`
	PodUID      string `json:"pod_uid"`
}

// readNodeReport reads a report's break and summary lines by pid.
func readNodeReport(t *testing.T, path string) (map[int][]nodeBreak, map[int][]*nodeSummary) {
	t.Helper()
	breaks, sums := map[int][]nodeBreak{}, map[int][]*nodeSummary{}
	data, _ := os.ReadFile(path)
	for _, l := range bytes.Split(data, []byte("\n")) {
		if len(l) == 0 || l[len(l)-1] != '}' {
			continue // empty, or being written
		}
		var typ struct{ Type string }
		if err := json.Unmarshal(l, &typ); err != nil {
			t.Fatalf("report line is not JSON: %v: %s", err, l)
		}
		switch typ.Type {
		case "break":
			var b nodeBreak
			if err := json.Unmarshal(l, &b); err != nil {
				t.Fatal(err)
			}
			breaks[b.PID] = append(breaks[b.PID], b)
		case "summary":
			s := &nodeSummary{}
			if err := json.Unmarshal(l, s); err != nil {
				t.Fatal(err)
			}
			sums[s.PID] = append(sums[s.PID], s)
		}
	}
	return breaks, sums
}

// TestNodeLeastPrivilege: ctxwatch node works with exactly the capabilities
// deploy/ grants (SYS_ADMIN, SYS_PTRACE, SYS_RESOURCE; no KILL, no
// DAC_OVERRIDE), on a Go process of another user, as a container's often
// is. Without SYS_ADMIN (BPF and PERFMON instead, enough before Linux
// required SYS_ADMIN for uprobes), it stops at once and says so, where it
// makes a perf event per uprobe; where the kernel has uprobe_multi links
// (Linux 6.6), which that requirement does not cover, it watches the
// process. On Linux 5.10 it stops without SYS_RESOURCE too.
func TestNodeLeastPrivilege(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "lp-waiter")
	if err := copyFile(filepath.Join(bin, "waiter"), exe); err != nil {
		t.Fatal(err)
	}
	target, stdin, lines := startWaiter(t, "setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", exe)
	go func() {
		for lines.Scan() {
		}
	}()

	node := func(caps string, extra ...string) *exec.Cmd {
		return exec.Command("setpriv", append([]string{"--inh-caps=-all", "--bounding-set=-all," + caps,
			filepath.Join(bin, "ctxwatch"), "node", "--match", "lp-*", "--trace-key", "type=main.traceKey",
			"--log-format", "text", "--metrics-addr", ""}, extra...)...)
	}
	const noAdminCaps = "+bpf,+perfmon,+sys_ptrace,+sys_resource"
	if uprobe.MultiLinks() {
		noAdmin := node(noAdminCaps, "--verbose")
		noAdminErr := &syncBuffer{}
		noAdmin.Stderr = noAdminErr
		if err := noAdmin.Start(); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if watchedRE(target.Process.Pid).MatchString(noAdminErr.String()) {
				break
			}
		}
		noAdmin.Process.Kill()
		noAdmin.Wait()
		// Watched, its overhead budget applied: the calibration's uprobes
		// are uprobe_multi links too.
		if !watchedRE(target.Process.Pid).MatchString(noAdminErr.String()) || strings.Contains(noAdminErr.String(), "budget not applied") {
			t.Errorf("without CAP_SYS_ADMIN, on a kernel with uprobe_multi links: not watched, or without its budget; stderr:\n%s", noAdminErr.String())
		}
	} else {
		noAdmin := node(noAdminCaps)
		var noAdminErr bytes.Buffer
		noAdmin.Stderr = &noAdminErr
		err := noAdmin.Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 ||
			strings.Count(noAdminErr.String(), "\n") != 1 || !strings.Contains(noAdminErr.String(), "CAP_SYS_ADMIN") {
			// A kernel from before the 2025 fix lets CAP_PERFMON create uprobes.
			t.Errorf("without CAP_SYS_ADMIN: %v, stderr:\n%s\nwant exit status 2 and one line naming CAP_SYS_ADMIN", err, noAdminErr.String())
		}
	}

	// Without SYS_RESOURCE: Linux before 5.11 charges BPF maps to
	// RLIMIT_MEMLOCK, which only it may raise past the hard limit. From
	// 5.11 it is not needed (the run below is without it wherever the
	// test's own bounding set lacks it).
	var memlock syscall.Rlimit
	if err := syscall.Getrlimit(unix.RLIMIT_MEMLOCK, &memlock); err != nil {
		t.Fatal(err)
	}
	if !kernelAtLeast(t, 5, 11) && memlock.Max != unix.RLIM_INFINITY {
		l := oneLine(t, node("+sys_admin,+sys_ptrace"), false, "missing capabilities CAP_SYS_RESOURCE")
		t.Logf("without CAP_SYS_RESOURCE, RLIMIT_MEMLOCK %d: %s", memlock.Max, l)
	} else {
		t.Logf("CAP_SYS_RESOURCE not needed: Linux 5.11 or later, or no locked memory limit")
	}

	out := filepath.Join(t.TempDir(), "report.json")
	cw := node("+sys_admin,+sys_ptrace,+sys_resource", "--verbose", "--output", out)
	stderr := &syncBuffer{}
	cw.Stderr = stderr
	if err := cw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cw.Process.Kill() })
	pid := target.Process.Pid
	waitFor(t, "the process to be watched", 30*time.Second, func() bool {
		return watchedRE(pid).MatchString(stderr.String()) || cw.ProcessState != nil
	})
	caps, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cw.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	// SYS_RESOURCE (24), SYS_ADMIN (21), SYS_PTRACE (19), of those the
	// test has itself (a container may run it without SYS_RESOURCE).
	want := uint64(1<<24|1<<21|1<<19) & ownBoundingSet(t)
	if !strings.Contains(string(caps), fmt.Sprintf("CapEff:\t%016x", want)) {
		t.Fatalf("ctxwatch runs with other capabilities than deploy/ grants:\n%s", caps)
	}
	const units = 2
	for range units {
		fmt.Fprintln(stdin, "go")
	}
	stdin.Close()
	if err := target.Wait(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the summary", 10*time.Second, func() bool {
		_, sums := readNodeReport(t, out)
		return len(sums[pid]) > 0
	})
	cw.Process.Signal(syscall.SIGTERM)
	if err := cw.Wait(); err != nil {
		t.Fatalf("ctxwatch node: %v\n%s", err, stderr.String())
	}
	_, sums := readNodeReport(t, out)
	if s := sums[pid]; len(s) != 1 || len(s[0].SpawnSites) != 1 || s[0].SpawnSites[0].Lost != units {
		t.Errorf("summaries %+v, want one, with %d goroutines that lost the trace", s, units)
	}
}

// ownBoundingSet returns this process's capability bounding set.
func ownBoundingSet(t *testing.T) uint64 {
	t.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			b, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	t.Fatal("no CapBnd in /proc/self/status")
	return 0
}
