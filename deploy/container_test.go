//go:build linux

package deploy

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// TestContainer runs the node agent's image in a real container runtime,
// Podman, the way daemonset.yaml's pod template says: every runtime
// setting is read from the manifest (podmanFlags), none retyped here. The
// agent must find Go programs started after it, on the host and in another
// container, and report their breaks with the container's identity; with
// one of the manifest's capabilities fewer it must stop with one line
// naming that capability.
//
// It needs root, podman and runc (apt-get install podman runc); CI runs it
// as root (.ci/run installs both). Why runc and not Debian's default crun:
// crun refuses a host whose cgroup v2 hierarchy holds controllers beside
// v1 ("cgroups in hybrid mode not supported"), as the machine this was
// written on does. Why podman run and not podman kube play on the pod
// template: Podman 4.3's kube play ignores hostPID and seccompProfile
// (its man page's table of supported fields; measured: the container got
// a PID namespace of its own).
func TestContainer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("runs containers with the agent's capabilities: needs root (sudo make container-test; CI runs it as root)")
	}
	for _, tool := range []string{"podman", "runc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s: %v (apt-get install podman runc)", tool, err)
		}
	}
	m := readManifest(t, "daemonset.yaml")
	if p := agentProblems(m); len(p) > 0 {
		reportProblems(t, "daemonset.yaml", p)
		t.FailNow()
	}
	spec := m.daemonSets[0].Spec.Template.Spec
	c := spec.Containers[0]

	pm := newPodman(t)
	agentImage := buildAgentImage(t, pm)
	name := "cwc-" + randomHex(t, 4) // the target's executable: --match selects it alone
	hostExe, targetImage := buildTarget(t, pm, name)
	want := wantedBreaks(t)

	base, err := podmanFlags(spec, c, hostEnv(t))
	if err != nil {
		t.Fatalf("daemonset.yaml: %v", err)
	}
	base.ulimits = hostUlimits(t)
	t.Logf("daemonset.yaml as podman run flags: %s", strings.Join(base.flags, " "))
	// Added for the test: the agent must leave the machine's other Go
	// programs (other people's tests) alone, and --verbose logs when it
	// watches a process. Refused, the agent runs without --verbose, and
	// its log is what kubectl logs would show.
	quiet := append(slices.Clone(c.Args), "--match="+name)
	args := append(slices.Clone(quiet), "--verbose")
	hostCaps := ownCaps(t, "CapBnd")

	t.Run("manifest", func(t *testing.T) {
		a := startAgent(t, pm, agentImage, base, args)
		checkAgentProcess(t, a, base, hostCaps)
		checkReady(t, pm, a, c)

		host := startHostTarget(t, hostExe)
		ctr := startContainerTarget(t, pm, targetImage, base.ulimits)
		targets := []*target{host, ctr}
		for _, tg := range targets {
			a.waitWatched(t, tg.pid)
		}
		for _, tg := range targets {
			tg.work(t, 2)
		}
		for _, tg := range targets {
			a.waitSummary(t, tg.pid)
		}
		// What the kubelet does on kubectl delete: SIGTERM, then SIGKILL
		// after the grace period.
		grace := int64(30)
		if spec.TerminationGracePeriodSeconds != nil {
			grace = *spec.TerminationGracePeriodSeconds
		}
		a.stop(t, grace)

		breaks, sums := a.report(t)
		ownCgroup, err := os.ReadFile("/proc/self/cgroup")
		if err != nil {
			t.Fatal(err)
		}
		for _, tg := range targets {
			checkBreaks(t, tg, breaks[tg.pid], want)
			s := sums[tg.pid]
			if len(s) != 1 {
				t.Errorf("%s: %d summaries, want 1", tg, len(s))
				continue
			}
			checkSummary(t, tg, s[0], want)
		}
		// The host process is in this test's cgroup: a container's only
		// if the test itself runs in one.
		if !containerIDRE.Match(ownCgroup) {
			for _, b := range breaks[host.pid] {
				if b.ContainerID != "" || b.PodUID != "" {
					t.Errorf("%s: break in container %q, pod %q; want none", host, b.ContainerID, b.PodUID)
				}
			}
		}
		for pid := range breaks {
			if pid != host.pid && pid != ctr.pid {
				t.Errorf("breaks of pid %d, which the test did not start", pid)
			}
		}
	})

	// With one capability fewer than the manifest grants. A capability
	// this machine's bounding set lacks cannot be granted in the first
	// place: the manifest subtest ran without it.
	add := capNames(c.SecurityContext.Capabilities.Add)
	for _, capName := range add {
		t.Run("without "+capName, func(t *testing.T) {
			bit, ok := capBits[capName]
			if !ok {
				t.Fatalf("capability %s: add its number (linux/capability.h) to capBits", capName)
			}
			if hostCaps&(1<<bit) == 0 {
				t.Skipf("this machine's capability bounding set lacks CAP_%s: the manifest subtest already ran without it", capName)
			}
			fewer := base.withoutCap(capName)
			if capName == "SYS_RESOURCE" && !kernelBefore(t, 5, 11) {
				// From 5.11 BPF maps are charged to the memory cgroup,
				// not RLIMIT_MEMLOCK, and the agent leaves the limit
				// alone (daemonset.yaml's comment): it must work.
				a := startAgent(t, pm, agentImage, fewer, args)
				tg := startHostTarget(t, hostExe)
				a.waitWatched(t, tg.pid)
				tg.work(t, 2) // two: the new-root goroutine keeps the trace in odd units
				a.waitSummary(t, tg.pid)
				breaks, _ := a.report(t)
				checkBreaks(t, tg, breaks[tg.pid], want)
				return
			}
			checkRefused(t, pm, agentImage, fewer, quiet, "CAP_"+capName, add)
		})
	}
}

// containerIDRE is how a container id appears in a cgroup path.
var containerIDRE = regexp.MustCompile(`[0-9a-f]{64}`)

// Capability numbers, linux/capability.h.
var capBits = map[string]uint{
	"KILL": 5, "NET_ADMIN": 12, "SYS_PTRACE": 19, "SYS_ADMIN": 21,
	"SYS_RESOURCE": 24, "PERFMON": 38, "BPF": 39,
}

// runFlags are podman run flags and what they were derived from.
type runFlags struct {
	flags   []string // from the manifest
	ulimits []string // from this machine (see hostUlimits)
	add     []string // the capabilities added, as the manifest names them
	ip      bool     // the container has a network of its own
}

// withoutCap returns f with one added capability fewer.
func (f runFlags) withoutCap(name string) runFlags {
	g := f
	g.flags = slices.DeleteFunc(slices.Clone(f.flags), func(s string) bool { return s == "--cap-add="+name })
	g.add = slices.DeleteFunc(slices.Clone(f.add), func(s string) bool { return s == name })
	return g
}

// podmanFlags maps the pod template's runtime settings to podman run
// flags, and fails on a setting it cannot map, so that a change of the
// manifest is either run here or noticed. Left out, as no runtime setting:
// scheduling (nodeSelector, tolerations, memory requests), the service
// account (no token is mounted: automountServiceAccountToken is false,
// which agentProblems checks), the image pull policy, the probes (checkReady
// asks the readiness probe's URL itself) and labels.
func podmanFlags(pod corev1.PodSpec, c corev1.Container, env hostValues) (runFlags, error) {
	var f runFlags
	add := func(s ...string) { f.flags = append(f.flags, s...) }
	if pod.HostPID {
		add("--pid=host")
	}
	if pod.HostIPC {
		add("--ipc=host")
	}
	if pod.HostNetwork {
		add("--network=host")
	} else {
		f.ip = true // podman's default bridge: an address of its own, like a pod's
	}
	if len(pod.Volumes) > 0 || len(c.VolumeMounts) > 0 {
		return f, fmt.Errorf("volumes %v, mounts %v: teach podmanFlags to mount them", pod.Volumes, c.VolumeMounts)
	}
	if psc := pod.SecurityContext; psc != nil && (psc.SeccompProfile != nil || psc.AppArmorProfile != nil || psc.RunAsUser != nil || psc.RunAsGroup != nil) {
		return f, fmt.Errorf("pod securityContext %v: teach podmanFlags to merge it with the container's", psc)
	}
	sc := c.SecurityContext
	if sc.RunAsUser != nil {
		g := int64(0)
		if sc.RunAsGroup != nil {
			g = *sc.RunAsGroup
		}
		add(fmt.Sprintf("--user=%d:%d", *sc.RunAsUser, g))
	}
	if sc.Privileged != nil && *sc.Privileged {
		add("--privileged")
	}
	if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		add("--security-opt=no-new-privileges")
	}
	if sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
		// Without --read-only-tmpfs=false podman would mount writable
		// tmpfs on /run, /tmp and /var/tmp; Kubernetes mounts none.
		add("--read-only", "--read-only-tmpfs=false")
	}
	if caps := sc.Capabilities; caps != nil {
		for _, d := range capNames(caps.Drop) {
			add("--cap-drop=" + d)
		}
		for _, a := range capNames(caps.Add) {
			add("--cap-add=" + a)
			f.add = append(f.add, a)
		}
	}
	if sp := sc.SeccompProfile; sp != nil {
		switch sp.Type {
		case corev1.SeccompProfileTypeRuntimeDefault:
			// podman's default profile, as for any container.
		case corev1.SeccompProfileTypeUnconfined:
			add("--security-opt=seccomp=unconfined")
		default:
			return f, fmt.Errorf("seccompProfile %s: teach podmanFlags to load it", sp.Type)
		}
	}
	if ap := sc.AppArmorProfile; ap != nil {
		switch ap.Type {
		case corev1.AppArmorProfileTypeRuntimeDefault:
		case corev1.AppArmorProfileTypeUnconfined:
			add("--security-opt=apparmor=unconfined")
		default:
			return f, fmt.Errorf("appArmorProfile %s: teach podmanFlags to load it", ap.Type)
		}
	}
	if sc.SELinuxOptions != nil || sc.ProcMount != nil || sc.WindowsOptions != nil {
		return f, fmt.Errorf("securityContext %v: teach podmanFlags its other fields", sc)
	}
	if cpu, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		add(fmt.Sprintf("--cpus=%g", float64(cpu.MilliValue())/1000))
	}
	if mem, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
		add(fmt.Sprintf("--memory=%d", mem.Value()))
	}
	if cpu, ok := c.Resources.Requests[corev1.ResourceCPU]; ok {
		// As the kubelet sets cpu.shares from the request.
		add(fmt.Sprintf("--cpu-shares=%d", max(2, cpu.MilliValue()*1024/1000)))
	}
	for _, p := range c.Ports {
		if p.HostPort != 0 {
			return f, fmt.Errorf("port %s: hostPort %d: teach podmanFlags to publish it", p.Name, p.HostPort)
		}
	}
	vars := map[string]string{}
	for _, e := range c.Env {
		v := e.Value
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			var ok bool
			if v, ok = env[e.ValueFrom.FieldRef.FieldPath]; !ok {
				return f, fmt.Errorf("env %s from %s: teach hostEnv its value", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
		case e.ValueFrom != nil:
			return f, fmt.Errorf("env %s from %v: teach podmanFlags this source", e.Name, e.ValueFrom)
		default:
			// Kubernetes expands $(NAME) of a variable defined before.
			v = varRef.ReplaceAllStringFunc(v, func(ref string) string {
				if val, ok := vars[varRef.FindStringSubmatch(ref)[1]]; ok {
					return val
				}
				return ref
			})
		}
		vars[e.Name] = v
		add("--env=" + e.Name + "=" + v)
	}
	if len(c.Command) > 0 {
		cmd, err := json.Marshal(c.Command)
		if err != nil {
			return f, err
		}
		add("--entrypoint=" + string(cmd))
	}
	return f, nil
}

// hostValues are the downward API's fields as a node would give them.
type hostValues map[string]string

func hostEnv(t *testing.T) hostValues {
	t.Helper()
	node, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return hostValues{
		"spec.nodeName": node,
		// The OTLP endpoint is built from it: 127.0.0.1, the agent's own
		// loopback, where no collector listens, so that no span of this
		// test lands in a collector of someone else's on this machine.
		// The agent warns once and goes on (TestExportUnreachable).
		"status.hostIP": "127.0.0.1",
	}
}

// hostUlimits are podman --ulimit flags with this machine's limits. For
// root, podman asks the runtime for RLIMIT_NOFILE and RLIMIT_NPROC of
// 1048576, which fails on a host that lacks CAP_SYS_RESOURCE or has lower
// hard limits; Kubernetes' runtimes pass theirs on. Podman lowers its own
// RLIMIT_NPROC to 32768 (measured, podman 4.3), and runc inherits it.
func hostUlimits(t *testing.T) []string {
	t.Helper()
	var nofile, nproc syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &nofile); err != nil {
		t.Fatal(err)
	}
	const rlimitNproc = 6 // RLIMIT_NPROC
	if err := syscall.Getrlimit(rlimitNproc, &nproc); err != nil {
		t.Fatal(err)
	}
	np := min(nproc.Cur, 32768)
	return []string{
		fmt.Sprintf("--ulimit=nofile=%d:%d", nofile.Cur, nofile.Cur),
		fmt.Sprintf("--ulimit=nproc=%d:%d", np, np),
	}
}

// podman runs podman on a store of its own (images, containers, locks,
// network allocations), removed at the end of the test.
type podman struct {
	global []string
	env    []string
}

func newPodman(t *testing.T) *podman {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "containers.conf")
	// File locks under --tmpdir: the default shared memory locks are one
	// set for the machine, which podman re-initializes for a store it
	// has not seen since boot.
	if err := os.WriteFile(conf, []byte("[engine]\nlock_type = \"file\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &podman{
		global: []string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"),
			"--tmpdir", filepath.Join(dir, "tmp"), "--runtime", "runc", "--events-backend", "none"},
		env: append(os.Environ(), "CONTAINERS_CONF="+conf),
	}
	t.Cleanup(func() {
		for _, args := range [][]string{{"rm", "--all", "--force", "--time", "0"}, {"rmi", "--all", "--force"}} {
			if out, err := p.cmd(args...).CombinedOutput(); err != nil {
				t.Errorf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
		// Anything still mounted in the store would keep t.TempDir from
		// removing it.
		mounts, _ := os.ReadFile("/proc/self/mounts")
		for _, l := range strings.Split(string(mounts), "\n") {
			if f := strings.Fields(l); len(f) > 1 && strings.HasPrefix(f[1], dir+"/") {
				t.Errorf("%s still mounted after podman rm: unmounting", f[1])
				syscall.Unmount(f[1], syscall.MNT_DETACH)
			}
		}
	})
	return p
}

func (p *podman) cmd(args ...string) *exec.Cmd {
	cmd := exec.Command("podman", append(slices.Clone(p.global), args...)...)
	cmd.Env = p.env
	cmd.Dir = "/" // kube play and build look for files relative to it
	return cmd
}

// out runs podman and returns its standard output, trimmed.
func (p *podman) out(args ...string) (string, error) {
	var stderr bytes.Buffer
	cmd := p.cmd(args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("podman %s: %w\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return strings.TrimSpace(string(out)), nil
}

// removeAtEnd removes container name when the test ends, passed or not.
func (p *podman) removeAtEnd(t *testing.T, name string) {
	t.Cleanup(func() {
		if out, err := p.cmd("rm", "--force", "--ignore", "--time", "0", name).CombinedOutput(); err != nil {
			t.Errorf("podman rm %s: %v\n%s", name, err, out)
		}
	})
}

// buildAgentImage builds the agent's image offline: the binary is built
// on the host by deploy/Dockerfile's own go build line, and the final
// stage is deploy/Dockerfile's with one change, FROM scratch instead of
// gcr.io/distroless/static-debian12, which no registry here can serve.
// What distroless adds (CA certificates for an https OTLP endpoint,
// /etc/passwd, tzdata) this test does not use. Generated, not kept in a
// file, so the two cannot drift; the image's entrypoint and user are then
// checked against the Dockerfile as podman built them.
func buildAgentImage(t *testing.T, pm *podman) string {
	t.Helper()
	stages, err := parseDockerfile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if len(stages) < 2 {
		t.Fatalf("Dockerfile: want a builder stage and a final stage, have %d", len(stages))
	}
	builder, final := stages[0], stages[len(stages)-1]
	b, err := findGoBuild(builder)
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	dir := t.TempDir()
	buildImageBinary(t, b, filepath.Join(dir, "ctxwatch"))

	var cf strings.Builder
	fmt.Fprintf(&cf, "# deploy/Dockerfile's final stage on scratch: %s cannot be pulled offline.\nFROM scratch\n", final.image)
	var entry []string
	var user string
	for _, in := range final.body {
		switch in.cmd {
		case "COPY":
			w := strings.Fields(in.args)
			if len(w) != 3 || w[0] != "--from="+builder.name || w[1] != b.out {
				t.Fatalf("Dockerfile:%d: COPY %s: only the build's binary is copied here", in.line, in.args)
			}
			fmt.Fprintf(&cf, "COPY ctxwatch %s\n", w[2])
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(in.args), &entry); err != nil {
				t.Fatalf("Dockerfile:%d: ENTRYPOINT is not in exec form: %v", in.line, err)
			}
			fmt.Fprintf(&cf, "%s %s\n", in.cmd, in.args)
		case "USER":
			user = in.args
			fmt.Fprintf(&cf, "%s %s\n", in.cmd, in.args)
		case "CMD", "ENV", "LABEL", "EXPOSE":
			fmt.Fprintf(&cf, "%s %s\n", in.cmd, in.args)
		default:
			t.Fatalf("Dockerfile:%d: %s in the final stage: teach buildAgentImage to copy it", in.line, in.cmd)
		}
	}
	t.Logf("Containerfile:\n%s", cf.String())
	if err := os.WriteFile(filepath.Join(dir, "Containerfile"), []byte(cf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	const image = "localhost/ctxwatch:test"
	if _, err := pm.out("build", "--quiet", "--file", filepath.Join(dir, "Containerfile"), "--tag", image, dir); err != nil {
		t.Fatalf("build the agent's image: %v", err)
	}
	var imgs []struct {
		Config struct {
			Entrypoint []string
			User       string
		}
	}
	js, err := pm.out("image", "inspect", image)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(js), &imgs); err != nil || len(imgs) != 1 {
		t.Fatalf("podman image inspect: %d images, %v", len(imgs), err)
	}
	cfg := imgs[0]
	if !slices.Equal(cfg.Config.Entrypoint, entry) || cfg.Config.User != user {
		t.Fatalf("image: entrypoint %q, user %q; deploy/Dockerfile says %q, %q", cfg.Config.Entrypoint, cfg.Config.User, entry, user)
	}
	return image
}

// otelunits is the target: integration/testdata/otelunits, an OTel-traced
// program whose breaks its source marks (// want:site KIND, // want:spawn
// KIND). Only the built-in OTel span key: the agent needs no flag for it.
const otelunits = "integration/testdata/otelunits"

// buildTarget builds otelunits static (no cgo) as name, for the host, and
// an image FROM scratch that runs it.
func buildTarget(t *testing.T, pm *podman, name string) (exe, image string) {
	t.Helper()
	dir := t.TempDir()
	exe = filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-trimpath", "-o", exe, "./"+otelunits)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", otelunits, err, out)
	}
	cf := fmt.Sprintf("FROM scratch\nCOPY %s /%[1]s\nENTRYPOINT [\"/%[1]s\"]\n", name)
	if err := os.WriteFile(filepath.Join(dir, "Containerfile"), []byte(cf), 0o644); err != nil {
		t.Fatal(err)
	}
	image = "localhost/" + name + ":test"
	if _, err := pm.out("build", "--quiet", "--file", filepath.Join(dir, "Containerfile"), "--tag", image, dir); err != nil {
		t.Fatalf("build the target's image: %v", err)
	}
	return exe, image
}

// mark is a break the target's source announces: the lines of its site
// and of its spawn (0: none).
type mark struct{ site, spawn int }

func wantedBreaks(t *testing.T) map[string]mark {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("..", otelunits, "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]mark{}
	re := regexp.MustCompile(`// want:(site|spawn) (\S+)`)
	for i, l := range strings.Split(string(src), "\n") {
		if m := re.FindStringSubmatch(l); m != nil {
			w := want[m[2]]
			if m[1] == "site" {
				w.site = i + 1
			} else {
				w.spawn = i + 1
			}
			want[m[2]] = w
		}
	}
	if len(want) < 3 {
		t.Fatalf("%s marks %v: want three kinds of breaks", otelunits, want)
	}
	return want
}

// agent is the agent's container, running.
type agent struct {
	name           string
	pm             *podman
	pid            int // on the host (and, with hostPID, for the agent)
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	exited         chan struct{}
}

// startAgent runs the agent's image with flags f and the container's args.
func startAgent(t *testing.T, pm *podman, image string, f runFlags, args []string) *agent {
	t.Helper()
	a := &agent{name: "ctxwatch-" + randomHex(t, 4), pm: pm, stdout: &syncBuffer{}, stderr: &syncBuffer{}, exited: make(chan struct{})}
	pm.removeAtEnd(t, a.name)
	run := append([]string{"run", "--name=" + a.name}, f.flags...)
	run = append(append(run, f.ulimits...), image)
	a.cmd = pm.cmd(append(run, args...)...)
	a.cmd.Stdout, a.cmd.Stderr = a.stdout, a.stderr
	t.Logf("podman %s", strings.Join(a.cmd.Args[1+len(pm.global):], " "))
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("podman run: %v", err)
	}
	go func() { a.cmd.Wait(); close(a.exited) }()
	waitFor(t, "the agent's first scan of /proc", 60*time.Second, func() bool {
		select {
		case <-a.exited:
			t.Fatalf("the agent exited: %v\nstderr:\n%s", a.cmd.ProcessState, a.stderr.String())
		default:
		}
		return a.logged(`processes watched after the scan`)
	})
	pid, err := pm.out("inspect", "--format", "{{.State.Pid}}", a.name)
	if err != nil {
		t.Fatal(err)
	}
	if a.pid, err = strconv.Atoi(pid); err != nil || a.pid <= 0 {
		t.Fatalf("podman inspect: pid %q", pid)
	}
	return a
}

// logged says whether a log line's message matches the pattern.
func (a *agent) logged(pattern string) bool {
	re := regexp.MustCompile(pattern)
	for _, l := range strings.Split(a.stderr.String(), "\n") {
		var rec struct{ Msg string }
		if json.Unmarshal([]byte(l), &rec) == nil && re.MatchString(rec.Msg) {
			return true
		}
	}
	return false
}

func (a *agent) waitWatched(t *testing.T, pid int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("the agent to watch pid %d", pid), 60*time.Second, func() bool {
		return a.logged(fmt.Sprintf(`^pid %d \(.*?\) watched`, pid))
	})
}

func (a *agent) waitSummary(t *testing.T, pid int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("the summary of pid %d", pid), 30*time.Second, func() bool {
		_, sums := a.report(t)
		return len(sums[pid]) > 0
	})
}

// stop stops the container as the kubelet would, and checks that the agent
// ended within the grace period by itself, with status 0.
func (a *agent) stop(t *testing.T, grace int64) {
	t.Helper()
	start := time.Now()
	if out, err := a.pm.cmd("stop", "--time", fmt.Sprint(grace), a.name).CombinedOutput(); err != nil {
		t.Fatalf("podman stop: %v\n%s", err, out)
	}
	<-a.exited
	if code := a.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("after SIGTERM the agent exited with status %d (137: killed at the end of the grace period), want 0; stderr:\n%s", code, a.stderr.String())
	}
	t.Logf("the agent stopped %v after SIGTERM", time.Since(start).Round(time.Millisecond))
}

// jsonBreak and jsonSummary are what a user reads of the agent's JSON
// lines (DESIGN.md §3).
type jsonFrame struct {
	Function, File string
	Line           int
}

type jsonBreak struct {
	Type        string
	Kind        string
	PID         int
	ContainerID string `json:"container_id"`
	PodUID      string `json:"pod_uid"`
	Site        jsonFrame
	Spawn       []jsonFrame
}

type jsonSummary struct {
	Type        string
	PID         int
	ContainerID string `json:"container_id"`
	EventsLost  *int64 `json:"events_lost"`
	SpawnSites  []struct {
		Site         jsonFrame
		TracedSpawns int `json:"traced_spawns"`
		Propagated   int
		Lost         int
		NewRoot      int `json:"new_root"`
	} `json:"spawn_sites"`
}

func (a *agent) report(t *testing.T) (map[int][]jsonBreak, map[int][]jsonSummary) {
	t.Helper()
	breaks, sums := map[int][]jsonBreak{}, map[int][]jsonSummary{}
	out := a.stdout.String()
	lines := strings.Split(out, "\n")
	lines = lines[:len(lines)-1] // "" after the last newline, or a line half written
	for _, l := range lines {
		var typ struct{ Type string }
		if err := json.Unmarshal([]byte(l), &typ); err != nil {
			t.Fatalf("agent output %q: %v", l, err)
		}
		switch typ.Type {
		case "break":
			var b jsonBreak
			if err := json.Unmarshal([]byte(l), &b); err != nil {
				t.Fatal(err)
			}
			breaks[b.PID] = append(breaks[b.PID], b)
		case "summary":
			var s jsonSummary
			if err := json.Unmarshal([]byte(l), &s); err != nil {
				t.Fatal(err)
			}
			sums[s.PID] = append(sums[s.PID], s)
		}
	}
	return breaks, sums
}

// checkAgentProcess checks what the kernel says of the agent's process:
// what the manifest asks, not what podman was told.
func checkAgentProcess(t *testing.T, a *agent, f runFlags, hostCaps uint64) {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", a.pid))
	if err != nil {
		t.Fatal(err)
	}
	field := func(name string) string {
		for _, l := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(l, name+":"); ok {
				return strings.TrimSpace(v)
			}
		}
		t.Fatalf("no %s in /proc/%d/status", name, a.pid)
		return ""
	}
	var want uint64
	var notGranted []string
	for _, c := range f.add {
		bit, ok := capBits[c]
		if !ok {
			t.Fatalf("capability %s: add its number (linux/capability.h) to capBits", c)
		}
		if hostCaps&(1<<bit) == 0 {
			notGranted = append(notGranted, "CAP_"+c)
			continue
		}
		want |= 1 << bit
	}
	if len(notGranted) > 0 {
		t.Logf("this machine's capability bounding set lacks %s: the runtime could not grant it, the agent runs without", strings.Join(notGranted, ", "))
	}
	for _, set := range []string{"CapEff", "CapPrm", "CapBnd"} {
		if got, _ := strconv.ParseUint(field(set), 16, 64); got != want {
			t.Errorf("%s %016x, want %016x (the manifest's %v)", set, got, want, f.add)
		}
	}
	for name, want := range map[string]string{
		"CapInh": "0000000000000000", "CapAmb": "0000000000000000",
		"Uid": "0\t0\t0\t0", "Gid": "0\t0\t0\t0",
		"NoNewPrivs": "1", // allowPrivilegeEscalation: false
		"Seccomp":    "2", // a filter: the runtime's default profile
	} {
		if got := field(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	// hostPID: the node's PID namespace.
	if ns, self := readlink(t, fmt.Sprintf("/proc/%d/ns/pid", a.pid)), readlink(t, "/proc/self/ns/pid"); ns != self {
		t.Errorf("the agent's PID namespace is %s, the host's %s", ns, self)
	}
	// readOnlyRootFilesystem: / is mounted read-only, and nothing else
	// but the kernel's filesystems is writable.
	mi, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", a.pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(mi), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 {
			continue
		}
		opts := strings.Split(f[5], ",")
		if f[4] == "/" && !slices.Contains(opts, "ro") {
			t.Errorf("the root filesystem is mounted %s, want ro", f[5])
		}
		if i := slices.Index(f, "-"); i > 0 && i+1 < len(f) && f[i+1] == "tmpfs" && slices.Contains(opts, "rw") &&
			(f[4] == "/tmp" || f[4] == "/run" || f[4] == "/var/tmp") {
			t.Errorf("a writable tmpfs on %s", f[4])
		}
	}
	// AppArmor: unconfined as the manifest says, where the kernel has it.
	if en, err := os.ReadFile("/sys/module/apparmor/parameters/enabled"); err == nil && strings.TrimSpace(string(en)) == "Y" {
		cur, err := os.ReadFile(fmt.Sprintf("/proc/%d/attr/current", a.pid))
		if err != nil || strings.TrimSpace(string(cur)) != "unconfined" {
			t.Errorf("AppArmor profile %q (%v), want unconfined", cur, err)
		}
	} else {
		t.Logf("AppArmor is not enabled on this kernel (no /sys/module/apparmor): appArmorProfile Unconfined changes nothing here")
	}
}

// checkReady asks what the manifest's readiness probe asks, on the
// container's own address.
func checkReady(t *testing.T, pm *podman, a *agent, c corev1.Container) {
	t.Helper()
	p := c.ReadinessProbe.HTTPGet
	port := p.Port.IntValue()
	for _, cp := range c.Ports {
		if cp.Name == p.Port.String() {
			port = int(cp.ContainerPort)
		}
	}
	ip, err := pm.out("inspect", "--format", "{{.NetworkSettings.IPAddress}}", a.name)
	if err != nil || ip == "" {
		t.Fatalf("the agent's address: %q, %v", ip, err)
	}
	url := fmt.Sprintf("http://%s:%d%s", ip, port, p.Path)
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get(url)
	if err != nil {
		t.Fatalf("readiness probe: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("readiness probe %s: %s %q", url, resp.Status, body)
	}
}

// target is a running otelunits.
type target struct {
	what        string
	pid         int    // on the host
	containerID string // podman's, or empty
	stdin       io.WriteCloser
	lines       chan string
	cmd         *exec.Cmd
}

func (tg *target) String() string { return fmt.Sprintf("%s (pid %d)", tg.what, tg.pid) }

func startTarget(t *testing.T, what string, cmd *exec.Cmd) *target {
	t.Helper()
	tg := &target{what: what, cmd: cmd, lines: make(chan string, 100)}
	var err error
	if tg.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", what, err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	go func() {
		defer close(tg.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			tg.lines <- sc.Text()
		}
	}()
	if l := tg.next(t); l != "ready" {
		t.Fatalf("%s said %q, want ready; stderr:\n%s", what, l, stderr.String())
	}
	return tg
}

func (tg *target) next(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-tg.lines:
		if !ok {
			t.Fatalf("%s ended its output", tg)
		}
		return l
	case <-time.After(60 * time.Second):
		t.Fatalf("%s said nothing for 60s", tg)
	}
	return ""
}

// work runs n units and ends the target.
func (tg *target) work(t *testing.T, n int) {
	t.Helper()
	for range n {
		fmt.Fprintln(tg.stdin, "go")
	}
	tg.stdin.Close()
	for i := range n {
		if l := tg.next(t); l != fmt.Sprint("done ", i+1) {
			t.Fatalf("%s said %q after unit %d", tg, l, i+1)
		}
	}
	last := tg.next(t)
	if err := tg.cmd.Wait(); err != nil {
		t.Fatalf("%s: %v", tg, err)
	}
	t.Logf("%s: %s", tg, last)
}

func startHostTarget(t *testing.T, exe string) *target {
	t.Helper()
	tg := startTarget(t, "on the host", exec.Command(exe))
	tg.pid = tg.cmd.Process.Pid
	return tg
}

func startContainerTarget(t *testing.T, pm *podman, image string, ulimits []string) *target {
	t.Helper()
	name := "target-" + randomHex(t, 4)
	pm.removeAtEnd(t, name)
	tg := startTarget(t, "in container "+name, pm.cmd(append(append([]string{"run", "--interactive", "--name=" + name, "--network=none"}, ulimits...), image)...))
	out, err := pm.out("inspect", "--format", "{{.State.Pid}} {{.Id}}", name)
	if err != nil {
		t.Fatal(err)
	}
	pid, id, _ := strings.Cut(out, " ")
	if tg.pid, err = strconv.Atoi(pid); err != nil || !containerIDRE.MatchString(id) {
		t.Fatalf("podman inspect: %q", out)
	}
	tg.containerID = id
	t.Logf("%s: container id %s", tg, id)
	return tg
}

// checkBreaks checks a target's break lines: one per kind its source
// marks, at the marked lines, with the container's identity.
func checkBreaks(t *testing.T, tg *target, got []jsonBreak, want map[string]mark) {
	t.Helper()
	var kinds []string
	for _, b := range got {
		kinds = append(kinds, b.Kind)
		w, ok := want[b.Kind]
		switch {
		case !ok:
			t.Errorf("%s: unexpected %s break at %s:%d", tg, b.Kind, b.Site.File, b.Site.Line)
			continue
		case !strings.HasSuffix(b.Site.File, otelunits+"/main.go") || b.Site.Line != w.site:
			t.Errorf("%s: %s at %s:%d, want %s/main.go:%d", tg, b.Kind, b.Site.File, b.Site.Line, otelunits, w.site)
		case w.spawn == 0 && len(b.Spawn) != 0:
			t.Errorf("%s: %s with a spawn stack %v", tg, b.Kind, b.Spawn)
		case w.spawn != 0 && (len(b.Spawn) == 0 || b.Spawn[0].Line != w.spawn):
			t.Errorf("%s: %s spawned at %v, want line %d", tg, b.Kind, b.Spawn, w.spawn)
		}
		if tg.containerID != "" && b.ContainerID != tg.containerID {
			t.Errorf("%s: %s break in container %q, podman says %s", tg, b.Kind, b.ContainerID, tg.containerID)
		}
		if b.PodUID != "" {
			t.Errorf("%s: pod_uid %q, but podman run makes no pod", tg, b.PodUID)
		}
	}
	slices.Sort(kinds)
	var wantKinds []string
	for k := range want {
		wantKinds = append(wantKinds, k)
	}
	slices.Sort(wantKinds)
	if !slices.Equal(kinds, wantKinds) {
		t.Errorf("%s: breaks %v, want one each of %v", tg, kinds, wantKinds)
	}
}

// checkSummary checks the exit summary: per marked spawn site, every
// traced spawn judged (otelunits: the new-root site keeps the trace in
// odd units, the lost-at-spawn site never does).
func checkSummary(t *testing.T, tg *target, s jsonSummary, want map[string]mark) {
	t.Helper()
	if tg.containerID != "" && s.ContainerID != tg.containerID {
		t.Errorf("%s: summary in container %q, podman says %s", tg, s.ContainerID, tg.containerID)
	}
	if s.EventsLost == nil || *s.EventsLost != 0 {
		t.Errorf("%s: events_lost %v, want 0", tg, s.EventsLost)
	}
	for _, ss := range s.SpawnSites {
		switch ss.Site.Line {
		case want["lost-at-spawn"].spawn:
			if ss.TracedSpawns == 0 || ss.Lost != ss.TracedSpawns {
				t.Errorf("%s: spawn site %d: %+v, want every traced spawn lost", tg, ss.Site.Line, ss)
			}
		case want["new-root"].spawn:
			if ss.TracedSpawns == 0 || ss.NewRoot+ss.Propagated != ss.TracedSpawns || ss.NewRoot == 0 {
				t.Errorf("%s: spawn site %d: %+v, want new roots and propagated making up every traced spawn", tg, ss.Site.Line, ss)
			}
		}
	}
}

// checkRefused runs the agent with flags f and checks that it stops at
// once with exit status 2 and one log line naming capability missing and
// none of the others the manifest adds.
func checkRefused(t *testing.T, pm *podman, image string, f runFlags, args []string, missing string, add []string) {
	t.Helper()
	name := "ctxwatch-" + randomHex(t, 4)
	pm.removeAtEnd(t, name)
	run := append(append(append([]string{"run", "--name=" + name}, f.flags...), f.ulimits...), image)
	cmd := pm.cmd(append(run, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("without %s the agent still runs after 60s; stderr:\n%s", missing, stderr.String())
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Errorf("without %s: %v, want exit status 2 (bad input)", missing, err)
	}
	code := cmd.ProcessState.ExitCode()
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	var rec struct{ Level, Msg string }
	if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &rec) != nil {
		t.Fatalf("without %s, stderr:\n%s\nwant one JSON log line", missing, stderr.String())
	}
	if !strings.Contains(rec.Msg, missing) {
		t.Errorf("without %s: %q does not name it", missing, rec.Msg)
	}
	for _, c := range add {
		if "CAP_"+c != missing && strings.Contains(rec.Msg, "CAP_"+c) {
			t.Errorf("without %s: %q names CAP_%s, which the agent holds", missing, rec.Msg, c)
		}
	}
	if stdout.Len() > 0 {
		t.Errorf("without %s, stdout:\n%s", missing, stdout.String())
	}
	t.Logf("without %s: exit %d, %s: %s", missing, code, rec.Level, rec.Msg)
}

// ownCaps returns a capability set of this process from /proc/self/status.
func ownCaps(t *testing.T, set string) uint64 {
	t.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, set+":"); ok {
			c, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
	}
	t.Fatalf("no %s in /proc/self/status", set)
	return 0
}

// kernelBefore says whether the running kernel is older than major.minor.
func kernelBefore(t *testing.T, major, minor int) bool {
	t.Helper()
	rel, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`^(\d+)\.(\d+)`).FindSubmatch(rel)
	if m == nil {
		t.Fatalf("kernel release %q", rel)
	}
	ma, _ := strconv.Atoi(string(m[1]))
	mi, _ := strconv.Atoi(string(m[2]))
	return ma < major || ma == major && mi < minor
}

func readlink(t *testing.T, path string) string {
	t.Helper()
	s, err := os.Readlink(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s after %v", what, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer that a command writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
