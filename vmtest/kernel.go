package main

import (
	"archive/tar"
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// suite is a Debian release and the kernel series it ships.
type suite struct {
	series string // "5.10"
	name   string // "bullseye"
}

// suites are the kernels vmtest knows, oldest first.
var suites = []suite{
	{"5.10", "bullseye"},
	{"6.1", "bookworm"},
	{"6.12", "trixie"},
}

// kernel is a fetched kernel: its image and its build configuration.
type kernel struct {
	series  string
	release string // uname -r, e.g. 6.12.118+deb13-cloud-amd64
	pkg     string // the Debian package and version it came from
	vmlinuz string
	config  string
}

// needConfig are the options the VM and ctxwatch need, built in (=y): the
// initramfs holds no modules. The console's driver is the arch's
// (arch.consoleOpt).
var needConfig = []struct{ opt, why string }{
	{"CONFIG_BLK_DEV_INITRD", "boot from an initramfs"},
	{"CONFIG_DEVTMPFS", "/dev"},
	{"CONFIG_UNIX98_PTYS", "ptys for tmux (TestLiveTable)"},
	{"CONFIG_INET", "loopback HTTP in the examples"},
	{"CONFIG_BPF_SYSCALL", "eBPF"},
	{"CONFIG_BPF_EVENTS", "eBPF programs on uprobes and tracepoints"},
	{"CONFIG_UPROBES", "uprobes"},
	{"CONFIG_UPROBE_EVENTS", "uprobes"},
	{"CONFIG_DEBUG_INFO_BTF", "BTF at /sys/kernel/btf/vmlinux (tp_btf, CO-RE)"},
}

// checkConfig says which needed options a kernel's configuration lacks,
// of needConfig and the console of a.
func checkConfig(path string, a arch) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	set := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && strings.HasPrefix(k, "CONFIG_") {
			set[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	var missing []string
	need := append(needConfig[:len(needConfig):len(needConfig)], struct{ opt, why string }{a.consoleOpt, "console on " + a.console})
	for _, n := range need {
		if set[n.opt] != "y" {
			missing = append(missing, fmt.Sprintf("%s=%q (%s)", n.opt, set[n.opt], n.why))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s: not built in: %s", filepath.Base(path), strings.Join(missing, ", "))
	}
	return nil
}

// aptRoot is apt with a configuration of its own in a temporary
// directory, for one Debian release and architecture: the system's
// sources are neither read nor changed.
type aptRoot struct {
	dir  string
	opts []string
}

// newApt writes the configuration and runs apt-get update. close removes it.
func newApt(s suite, debArch string, logf func(string, ...any)) (*aptRoot, error) {
	tmp, err := os.MkdirTemp("", "vmtest-apt-")
	if err != nil {
		return nil, err
	}
	a := &aptRoot{dir: tmp}
	for _, d := range []string{"lists/partial", "cache/archives/partial", "sources.list.d", "debs"} {
		if err := os.MkdirAll(filepath.Join(tmp, d), 0o755); err != nil {
			a.close()
			return nil, err
		}
	}
	const keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
	sources := fmt.Sprintf("deb [signed-by=%[1]s] http://deb.debian.org/debian %[2]s main\n"+
		"deb [signed-by=%[1]s] http://deb.debian.org/debian %[2]s-updates main\n"+
		"deb [signed-by=%[1]s] http://deb.debian.org/debian-security %[2]s-security main\n", keyring, s.name)
	if err := os.WriteFile(filepath.Join(tmp, "sources.list"), []byte(sources), 0o644); err != nil {
		a.close()
		return nil, err
	}
	a.opts = []string{
		"-o", "Dir::Etc::sourcelist=" + filepath.Join(tmp, "sources.list"),
		"-o", "Dir::Etc::sourceparts=" + filepath.Join(tmp, "sources.list.d"),
		"-o", "Dir::State::Lists=" + filepath.Join(tmp, "lists"),
		"-o", "Dir::Cache=" + filepath.Join(tmp, "cache"),
		"-o", "APT::Architecture=" + debArch,
		"-o", "APT::Sandbox::User=root",
		"-o", "Acquire::Languages=none",
		"-q",
	}
	logf("%s: apt-get update for %s/%s", s.series, s.name, debArch)
	if _, err := a.run(tmp, "apt-get", "update"); err != nil {
		a.close()
		return nil, err
	}
	return a, nil
}

func (a *aptRoot) close() { os.RemoveAll(a.dir) }

func (a *aptRoot) run(dir, name string, args ...string) (string, error) {
	cmd := exec.Command(name, append(append([]string{}, a.opts...), args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// download fetches the .deb of each package into a fresh directory and
// returns their paths, in the order of pkgs.
func (a *aptRoot) download(pkgs ...string) ([]string, error) {
	debs, err := os.MkdirTemp(a.dir, "debs-")
	if err != nil {
		return nil, err
	}
	if _, err := a.run(debs, "apt-get", append([]string{"download"}, pkgs...)...); err != nil {
		return nil, err
	}
	var files []string
	for _, p := range pkgs {
		name, _, _ := strings.Cut(p, ":")
		m, _ := filepath.Glob(filepath.Join(debs, name+"_*.deb"))
		if len(m) != 1 {
			return nil, fmt.Errorf("apt-get download %s left %d .deb files for it", p, len(m))
		}
		files = append(files, m[0])
	}
	return files, nil
}

// fetchKernel returns the kernel of a suite and architecture from the
// cache, fetching it with apt first when it is not there (or when refresh
// is set).
func fetchKernel(cache string, s suite, flavour, debArch string, refresh bool, logf func(string, ...any)) (kernel, error) {
	dir := filepath.Join(cache, "kernels", s.name+"-"+flavour)
	if k, err := cachedKernel(dir, s); err == nil && !refresh {
		return k, nil
	}
	apt, err := newApt(s, debArch, logf)
	if err != nil {
		return kernel{}, err
	}
	defer apt.close()
	// The metapackage names the current ABI's image package.
	meta := "linux-image-" + flavour
	out, err := apt.run(apt.dir, "apt-cache", "depends", meta)
	if err != nil {
		return kernel{}, err
	}
	var pkg string
	for _, line := range strings.Split(out, "\n") {
		if d, ok := strings.CutPrefix(strings.TrimSpace(line), "Depends: "); ok && strings.HasPrefix(d, "linux-image-") {
			pkg = d
			break
		}
	}
	if pkg == "" {
		return kernel{}, fmt.Errorf("%s in %s depends on no linux-image package:\n%s", meta, s.name, out)
	}
	logf("%s: apt-get download %s", s.series, pkg)
	files, err := apt.download(pkg)
	if err != nil {
		return kernel{}, err
	}
	stage := dir + ".new"
	os.RemoveAll(stage)
	if err := os.MkdirAll(stage, 0o755); err != nil {
		return kernel{}, err
	}
	if err := extractBoot(files[0], stage); err != nil {
		return kernel{}, err
	}
	if err := os.WriteFile(filepath.Join(stage, "package"), []byte(filepath.Base(files[0])+"\n"), 0o644); err != nil {
		return kernel{}, err
	}
	os.RemoveAll(dir)
	if err := os.Rename(stage, dir); err != nil {
		return kernel{}, err
	}
	return cachedKernel(dir, s)
}

func cachedKernel(dir string, s suite) (kernel, error) {
	imgs, _ := filepath.Glob(filepath.Join(dir, "vmlinuz-*"))
	if len(imgs) != 1 {
		return kernel{}, fmt.Errorf("%s: want one vmlinuz, found %d", dir, len(imgs))
	}
	release := strings.TrimPrefix(filepath.Base(imgs[0]), "vmlinuz-")
	k := kernel{series: s.series, release: release, vmlinuz: imgs[0], config: filepath.Join(dir, "config-"+release)}
	if _, err := os.Stat(k.config); err != nil {
		return kernel{}, err
	}
	pkg, err := os.ReadFile(filepath.Join(dir, "package"))
	if err != nil {
		return kernel{}, err
	}
	k.pkg = strings.TrimSpace(string(pkg))
	return k, nil
}

// extractBoot copies the vmlinuz and config files of a kernel package's
// /boot into dir (the modules are not needed: everything used is built in).
func extractBoot(deb, dir string) error {
	cmd := exec.Command("dpkg-deb", "--fsys-tarfile", deb)
	r, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("dpkg-deb: %w", err)
	}
	n := 0
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			cmd.Wait()
			return fmt.Errorf("%s: %w", deb, err)
		}
		base := filepath.Base(h.Name)
		if h.Typeflag != tar.TypeReg || filepath.Dir(filepath.Clean(h.Name)) != "boot" ||
			!(strings.HasPrefix(base, "vmlinuz-") || strings.HasPrefix(base, "config-")) {
			continue
		}
		f, err := os.Create(filepath.Join(dir, base))
		if err != nil {
			cmd.Wait()
			return err
		}
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			cmd.Wait()
			return err
		}
		n++
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("dpkg-deb --fsys-tarfile %s: %w", deb, err)
	}
	if n != 2 {
		return fmt.Errorf("%s: found %d of vmlinuz and config in /boot", deb, n)
	}
	return nil
}

// fetchBusybox returns a static busybox for a: the host's /bin/busybox
// (busybox-static) for the host's architecture, else Debian's
// busybox-static of bookworm for a, fetched with apt into the cache once.
func fetchBusybox(cache string, a arch, refresh bool, logf func(string, ...any)) (string, error) {
	if a.goarch == hostArch {
		return "/bin/busybox", nil
	}
	dir := filepath.Join(cache, "busybox-"+a.goarch)
	bin := filepath.Join(dir, "busybox")
	if _, err := os.Stat(bin); err == nil && !refresh {
		return bin, nil
	}
	apt, err := newApt(suites[1], a.goarch, logf)
	if err != nil {
		return "", err
	}
	defer apt.close()
	logf("apt-get download busybox-static:%s", a.goarch)
	files, err := apt.download("busybox-static")
	if err != nil {
		return "", err
	}
	x := filepath.Join(apt.dir, "x")
	if out, err := exec.Command("dpkg-deb", "-x", files[0], x).CombinedOutput(); err != nil {
		return "", fmt.Errorf("dpkg-deb -x %s: %w\n%s", files[0], err, out)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	data, err := os.ReadFile(filepath.Join(x, "bin", "busybox"))
	if err != nil {
		return "", fmt.Errorf("%s: %w", filepath.Base(files[0]), err)
	}
	if err := os.WriteFile(bin+".tmp", data, 0o755); err != nil {
		return "", err
	}
	return bin, os.Rename(bin+".tmp", bin)
}
