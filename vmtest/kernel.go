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
// initramfs holds no modules.
var needConfig = []struct{ opt, why string }{
	{"CONFIG_BLK_DEV_INITRD", "boot from an initramfs"},
	{"CONFIG_SERIAL_8250_CONSOLE", "console on ttyS0"},
	{"CONFIG_DEVTMPFS", "/dev"},
	{"CONFIG_UNIX98_PTYS", "ptys for tmux (TestLiveTable)"},
	{"CONFIG_INET", "loopback HTTP in the examples"},
	{"CONFIG_BPF_SYSCALL", "eBPF"},
	{"CONFIG_BPF_EVENTS", "eBPF programs on uprobes and tracepoints"},
	{"CONFIG_UPROBES", "uprobes"},
	{"CONFIG_UPROBE_EVENTS", "uprobes"},
	{"CONFIG_DEBUG_INFO_BTF", "BTF at /sys/kernel/btf/vmlinux (tp_btf, CO-RE)"},
}

// checkConfig says which needed options a kernel's configuration lacks.
func checkConfig(path string) error {
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
	for _, n := range needConfig {
		if set[n.opt] != "y" {
			missing = append(missing, fmt.Sprintf("%s=%q (%s)", n.opt, set[n.opt], n.why))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s: not built in: %s", filepath.Base(path), strings.Join(missing, ", "))
	}
	return nil
}

// fetchKernel returns the kernel of a suite from the cache, fetching it
// with apt first when it is not there (or when refresh is set). apt runs
// with a configuration of its own in a temporary directory: the system's
// sources are neither read nor changed.
func fetchKernel(cache string, s suite, flavour string, refresh bool, logf func(string, ...any)) (kernel, error) {
	dir := filepath.Join(cache, "kernels", s.name+"-"+flavour)
	if k, err := cachedKernel(dir, s); err == nil && !refresh {
		return k, nil
	}
	tmp, err := os.MkdirTemp("", "vmtest-apt-")
	if err != nil {
		return kernel{}, err
	}
	defer os.RemoveAll(tmp)
	for _, d := range []string{"lists/partial", "cache/archives/partial", "sources.list.d", "debs"} {
		if err := os.MkdirAll(filepath.Join(tmp, d), 0o755); err != nil {
			return kernel{}, err
		}
	}
	const keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
	sources := fmt.Sprintf("deb [signed-by=%[1]s] http://deb.debian.org/debian %[2]s main\n"+
		"deb [signed-by=%[1]s] http://deb.debian.org/debian %[2]s-updates main\n"+
		"deb [signed-by=%[1]s] http://deb.debian.org/debian-security %[2]s-security main\n", keyring, s.name)
	if err := os.WriteFile(filepath.Join(tmp, "sources.list"), []byte(sources), 0o644); err != nil {
		return kernel{}, err
	}
	opts := []string{
		"-o", "Dir::Etc::sourcelist=" + filepath.Join(tmp, "sources.list"),
		"-o", "Dir::Etc::sourceparts=" + filepath.Join(tmp, "sources.list.d"),
		"-o", "Dir::State::Lists=" + filepath.Join(tmp, "lists"),
		"-o", "Dir::Cache=" + filepath.Join(tmp, "cache"),
		"-o", "APT::Architecture=amd64",
		"-o", "APT::Sandbox::User=root",
		"-o", "Acquire::Languages=none",
		"-q",
	}
	apt := func(dir, name string, args ...string) (string, error) {
		cmd := exec.Command(name, append(append([]string{}, opts...), args...)...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out), nil
	}
	logf("%s: apt-get update for %s", s.series, s.name)
	if _, err := apt(tmp, "apt-get", "update"); err != nil {
		return kernel{}, err
	}
	// The metapackage names the current ABI's image package.
	meta := "linux-image-" + flavour
	out, err := apt(tmp, "apt-cache", "depends", meta)
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
	debs := filepath.Join(tmp, "debs")
	if _, err := apt(debs, "apt-get", "download", pkg); err != nil {
		return kernel{}, err
	}
	files, _ := filepath.Glob(filepath.Join(debs, "*.deb"))
	if len(files) != 1 {
		return kernel{}, fmt.Errorf("apt-get download %s left %d .deb files", pkg, len(files))
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
