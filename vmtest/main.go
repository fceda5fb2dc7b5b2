// Command vmtest proves ctxwatch's eBPF side on real distribution kernels.
// For each Debian kernel (5.10 of bullseye, 6.1 of bookworm, 6.12 of
// trixie) it fetches the package with apt into a cache outside the clone,
// boots it in qemu with an initramfs holding busybox, ctxwatch, the example
// targets and the root test binaries (internal/uprobe's loader tests and
// the integration suite), and prints a table: kernel, tests passed, seconds.
// It exits 1 when any kernel fails.
//
//	go run ./vmtest                    # all three kernels (make vmtest)
//	go run ./vmtest -kernels 6.1       # one
//	go run ./vmtest -accel tcg         # emulated, even where KVM works
//	go run ./vmtest -arch arm64        # arm64: 6.1 and 6.12 (make vmtest-arm64)
//
// With -arch arm64 (arch.go) the kernels are Debian's -cloud-arm64 ones,
// booted with qemu-system-aarch64 (qemu-system-arm) on the virt board under
// TCG with one vCPU; busybox is Debian's busybox-static for arm64, fetched
// with apt like the kernels; everything else is cross-compiled
// (GOARCH=arm64), Jaeger from $CTXWATCH_CACHE/jaeger-*/linux_arm64 (make
// jaeger-arm64), tmux and setpriv from Debian's arm64 packages with their
// libraries (userland.go). The same tests run as on amd64.
//
// Inside the VM there is no go command, so the integration tests that run
// it are left out by name with -skip (default vmSkip: the tests that need
// the go command, Chromium or Prometheus, or the host's speed);
// every other test runs as on the host, with CTXWATCH_TEST_BIN naming the
// prebuilt binaries and, under TCG, CTXWATCH_TEST_SLOW=4 (8 on arm64)
// stretching the tests' waits (on the kernel command line: it follows the
// accelerator each boot used).
//
// Needs: apt-get, dpkg-deb, qemu-system-x86_64 (qemu-system-x86),
// /bin/busybox static (busybox-static), tmux, and go; for -arch arm64,
// qemu-system-aarch64 (qemu-system-arm) instead. With -accel auto
// (the default) a kernel boots under KVM when /dev/kvm opens, and again
// under TCG when KVM does not run it: qemu reports a KVM internal error,
// or ends, or the guest's init has not started within 30s (kvmWatch).
// Some hosts open /dev/kvm and cannot run a stock kernel: a nested KVM
// without hardware virtualization (PVM) refuses qemu's MSRs for -cpu host,
// or its instruction emulator fails on the guest (cmpxchg16b, xrstor,
// shlx). -accel kvm or -accel tcg uses that one only.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// vmSkip are the tests that need what the VMs do not have. The go
// command: TestGoRun and TestGoTestExec run `go run` and `go test -exec`
// under ctxwatch; TestCompat and TestTooOldGo build targets with other Go
// toolchains, and so do TestLogToolchains and TestHandoffToolchains;
// TestSpawnProbeOnRunqputCall, TestAssumptionsChecked,
// TestSlogProbeOnHandleCall(ARM64), TestChanProbesPlanned and
// TestChanProbesPlannedARM64 build the binary they inspect (no kernel
// involved), and TestMultiLinks the one it attaches to (uprobe_multi links
// run in the VMs from 6.6 on all the same: every root test of the 6.12
// kernels attaches with them); TestGin and TestFiber build
// the modules of testdata/gin and testdata/fiber. Chromium and Prometheus:
// TestHTMLReport reads its page with the one, TestPrometheus scrapes with
// the other. And the host's speed, which TCG emulation divides by ten or
// more: TestOverheadBudget counts detach cycles in a fixed run; TestSoak
// and TestSoakAttachDetach make 10^7 probed calls and 50 attaches of a
// busy target; TestAgentMemory spawns a million goroutines;
// TestBurstAfterQuiet needs the agent to get a CPU as soon as the probes
// wake it (single-threaded TCG runs both guest CPUs on one host thread).
// And the live table's two tests in a tmux pane (TestLiveTable,
// TestOverloadLiveTable), a terminal's test with nothing of the kernel in
// it: under TCG ctxwatch sometimes ends within seconds with status 0 and
// its table's empty frame on screen (5.10, 6.12 and arm64; 3 of 6 runs of
// the pair on 5.10 on 2026-12-07), a cause not found yet. They run on the
// host (make test-host).
const vmSkip = "^(TestGoRun|TestGoTestExec|TestCompat|TestTooOldGo|TestLogToolchains|TestHandoffToolchains|TestSpawnProbeOnRunqputCall|TestAssumptionsChecked|TestSlogProbeOnHandleCall|TestSlogProbeOnHandleCallARM64|TestChanProbesPlanned|TestChanProbesPlannedARM64|TestMultiLinks|TestOverheadBudget|TestSoak|TestSoakAttachDetach|TestAgentMemory|TestBurstAfterQuiet|TestGin|TestFiber|TestHTMLReport|TestPrometheus|TestLiveTable|TestOverloadLiveTable)$"

func main() {
	os.Exit(run())
}

func run() int {
	cacheDefault := os.Getenv("CTXWATCH_CACHE")
	if cacheDefault == "" {
		cacheDefault = "/var/cache/ctxwatch"
	}
	var (
		archName = flag.String("arch", hostArch, "the guest's architecture: amd64, or arm64 (emulated: TCG)")
		kernels  = flag.String("kernels", "", "kernel series to boot, comma-separated, of: 5.10 (bullseye), 6.1 (bookworm), 6.12 (trixie) (default: all three on amd64, 6.1,6.12 on arm64)")
		cache    = flag.String("cache", filepath.Join(cacheDefault, "vmtest"), "kernel cache (default $CTXWATCH_CACHE/vmtest)")
		flavour  = flag.String("flavour", "", "Debian kernel flavour (default cloud-amd64, cloud-arm64)")
		refresh  = flag.Bool("refresh", false, "fetch the kernels again even when cached")
		mem      = flag.String("mem", "3G", "VM memory (the uncompressed initramfs, with Jaeger, is about 400 MB)")
		cpus     = flag.Int("smp", 0, "VM CPUs (default 2 on amd64, 1 on arm64)")
		limit    = flag.Duration("timeout", 40*time.Minute, "time limit per kernel")
		runRE    = flag.String("run", "", "-test.run for the test binaries")
		skipRE   = flag.String("skip", vmSkip, "-test.skip for the test binaries")
		quiet    = flag.Bool("q", false, "do not stream the guest consoles")
		parallel = flag.Int("parallel", 1, "VMs booted at once")
		mode     = flag.String("accel", "auto", "auto: KVM when /dev/kvm opens, and TCG again for a guest KVM does not run; kvm or tcg: that one only")
	)
	flag.Parse()
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "vmtest: "+format+"\n", args...) }
	a, err := archOf(*archName)
	if err != nil {
		logf("%v", err)
		return 2
	}
	if *kernels == "" {
		*kernels = a.kernels
	}
	if *flavour == "" {
		*flavour = a.flavour
	}
	if *cpus == 0 {
		*cpus = a.cpus
	}
	if a.goarch != hostArch {
		// KVM runs guests of the host's architecture only.
		if *mode == string(accelKVM) {
			logf("-accel kvm: KVM runs %s guests only, not %s", hostArch, a.goarch)
			return 2
		}
		*mode = string(accelTCG)
	}
	switch *mode {
	case "auto":
		if err := kvmUsable(); err != nil {
			logf("no KVM (%v): booting under TCG", err)
			*mode = string(accelTCG)
		}
	case string(accelKVM):
		if err := kvmUsable(); err != nil {
			logf("-accel kvm: %v", err)
			return 1
		}
	case string(accelTCG):
	default:
		logf("-accel %q: want auto, kvm or tcg", *mode)
		return 2
	}

	var want []suite
	for _, name := range strings.Split(*kernels, ",") {
		found := false
		for _, s := range suites {
			if s.series == strings.TrimSpace(name) {
				want, found = append(want, s), true
			}
		}
		if !found {
			logf("unknown kernel %q: want 5.10, 6.1 or 6.12", name)
			return 2
		}
	}

	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		logf("find the module's directory (run from the clone): %v", err)
		return 1
	}
	repo := strings.TrimSpace(string(root))

	var ks []kernel
	for _, s := range want {
		k, err := fetchKernel(*cache, s, *flavour, a.goarch, *refresh, logf)
		if err != nil {
			logf("kernel %s: %v", s.series, err)
			return 1
		}
		if err := checkConfig(k.config, a); err != nil {
			logf("kernel %s lacks what the tests need; try -flavour %s: %v", s.series, a.goarch, err)
			return 1
		}
		logf("kernel %s: %s (%s)", s.series, k.release, k.pkg)
		ks = append(ks, k)
	}

	busybox, err := fetchBusybox(*cache, a, *refresh, logf)
	if err != nil {
		logf("busybox for %s: %v", a.goarch, err)
		return 1
	}

	if err := checkFree(os.TempDir(), workSpace); err != nil {
		logf("%v", err)
		return 1
	}
	work, err := os.MkdirTemp("", "vmtest-")
	if err != nil {
		logf("%v", err)
		return 1
	}
	defer os.RemoveAll(work)
	t0 := time.Now()
	if err := build(repo, filepath.Join(work, "built"), a.goarch, logf); err != nil {
		logf("%v", err)
		return 1
	}
	common := []string{"-test.v", "-test.count=1", "-test.timeout=" + (*limit).String()}
	if *runRE != "" {
		common = append(common, "-test.run="+*runRE)
	}
	if *skipRE != "" {
		common = append(common, "-test.skip="+*skipRE)
	}
	runs := []suiteRun{
		{name: "agent", dir: filepath.Join(repo, "internal/agent"), args: common},
		{name: "uprobe", dir: filepath.Join(repo, "internal/uprobe"), args: common},
		{name: "integration", dir: filepath.Join(repo, "integration"), args: common},
	}
	// The export test runs Jaeger from the cache, at the path of the
	// host's build (make jaeger) inside the VM; for another architecture
	// the build in its GOOS_GOARCH directory (make jaeger-arm64).
	// CTXWATCH_TEST_SLOW comes with each boot's kernel command line
	// (qemuArgs): one initramfs serves KVM and TCG.
	env := map[string]string{"CTXWATCH_CACHE": cacheDefault}
	var extra []extraFile
	sub := ""
	if a.goarch != hostArch {
		sub = "linux_" + a.goarch
	}
	jaegers, _ := filepath.Glob(filepath.Join(cacheDefault, "jaeger-*", sub, "jaeger"))
	for _, j := range jaegers {
		extra = append(extra, extraFile{filepath.Join(cacheDefault, filepath.Base(filepath.Dir(filepath.Dir(j))), "jaeger"), j})
		if sub == "" {
			extra[len(extra)-1].path = j
		}
	}
	if a.goarch != hostArch {
		// tmux and setpriv (hostPrograms) of a's Debian packages.
		progs, err := fetchGuestPrograms(*cache, a, *refresh, logf)
		if err != nil {
			logf("tmux and setpriv for %s: %v", a.goarch, err)
			return 1
		}
		extra = append(extra, progs...)
	}
	initrd := filepath.Join(work, "initramfs.cpio")
	if err := writeInitramfs(initrd, repo, filepath.Join(work, "built"), busybox, a, runs, extra, env); err != nil {
		logf("initramfs: %v", err)
		return 1
	}
	st, _ := os.Stat(initrd)
	logf("built binaries and a %d MB initramfs in %.0fs", st.Size()>>20, time.Since(t0).Seconds())
	// The initramfs holds copies of the binaries: the disk they took is
	// given back while the VMs run (tens of minutes under TCG).
	os.RemoveAll(filepath.Join(work, "built"))

	vm := vmConfig{arch: a, initrd: initrd, mem: *mem, cpus: *cpus, limit: *limit, grace: kvmGrace, console: os.Stdout}
	if *quiet {
		vm.console = io.Discard
	}
	// Under TCG each VM keeps one host CPU busy: -parallel 2 on a 2-core
	// machine halves the matrix's wall time.
	results := make([]outcome, len(ks))
	sem := make(chan struct{}, max(*parallel, 1))
	var wg sync.WaitGroup
	for i, k := range ks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			o := bootKernel(k, vm, *mode, logf)
			results[i] = o
			if !o.ok() {
				logf("kernel %s failed: %s", k.release, describe(o))
			}
		}()
	}
	wg.Wait()

	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KERNEL\tRELEASE\tACCEL\tPASSED\tFAILED\tSKIPPED\tSECONDS\tRESULT")
	code := 0
	for _, o := range results {
		total := len(o.passed) + len(o.failed) + len(o.skipped)
		res := "ok"
		if !o.ok() {
			res, code = "FAIL: "+describe(o), 1
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%d\t%d\t%.0f\t%s\n", o.kernel.series, o.kernel.release, o.accel,
			len(o.passed), total, len(o.failed), len(o.skipped), o.seconds, res)
	}
	tw.Flush()
	for _, o := range results {
		for _, s := range o.skipped {
			fmt.Printf("%s: skipped %s\n", o.kernel.series, s)
		}
	}
	if *skipRE != "" {
		fmt.Printf("not run in the VMs (see vmSkip): -test.skip=%s\n", *skipRE)
	}
	return code
}

// bootKernel boots k under mode's accelerator: under "auto", KVM first,
// and TCG again when KVM does not run the guest (outcome.kvmFault).
func bootKernel(k kernel, vm vmConfig, mode string, logf func(string, ...any)) outcome {
	a := accelTCG
	if mode != string(accelTCG) {
		a = accelKVM
	}
	args := qemuArgs(k, vm, a)
	logf("booting %s: %s %s", k.release, vm.arch.qemu, strings.Join(args[slices.Index(args, "-append")+2:], " "))
	o := boot(k, vm, a)
	if o.kvmFault == "" || mode != "auto" {
		return o
	}
	logf("kernel %s: KVM does not run it (%s, after %.1fs): booting again under TCG (-accel tcg skips the try)",
		k.release, o.kvmFault, o.seconds)
	return boot(k, vm, accelTCG)
}

func describe(o outcome) string {
	var why []string
	if o.err != nil {
		why = append(why, o.err.Error())
	}
	if len(o.failed) > 0 {
		why = append(why, "failed "+strings.Join(o.failed, ", "))
	}
	for _, name := range sortedKeys(o.suites) {
		switch rc := o.suites[name]; {
		case rc == -1:
			why = append(why, name+" did not finish")
		case rc != 0 && len(o.failed) == 0:
			why = append(why, fmt.Sprintf("%s exited %d", name, rc))
		}
	}
	return strings.Join(why, "; ")
}
