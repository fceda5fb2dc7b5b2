package main

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// guestPackages are the Debian packages (of bookworm) whose programs stand
// in for the host's tmux and setpriv (hostPrograms) in a guest of another
// architecture, with the libraries they load.
var guestPackages = []string{"tmux", "libevent-core-2.1-7", "libtinfo6", "libutempter0", "util-linux", "libcap-ng0", "libc6"}

// fetchGuestPrograms returns hostPrograms for a guest of architecture a
// that is not the host's: the same programs and the shared libraries they
// load (by their DT_NEEDED entries, and the dynamic loader), each at the
// path it has in Debian, taken from a's packages fetched with apt into the
// cache once.
func fetchGuestPrograms(cache string, a arch, refresh bool, logf func(string, ...any)) ([]extraFile, error) {
	root := filepath.Join(cache, "userland-"+a.goarch)
	if _, err := os.Stat(filepath.Join(root, ".complete")); err != nil || refresh {
		if err := fetchPackages(root, a, guestPackages, logf); err != nil {
			return nil, err
		}
	}
	var files []extraFile
	seen := map[string]bool{}
	var add func(p string) error
	add = func(p string) error {
		if seen[p] {
			return nil
		}
		seen[p] = true
		src, err := resolveIn(root, p)
		if err != nil {
			return err
		}
		files = append(files, extraFile{p, src})
		f, err := elf.Open(src)
		if err != nil {
			return fmt.Errorf("%s of %s: %w", p, a.goarch, err)
		}
		defer f.Close()
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				interp := make([]byte, prog.Filesz)
				if _, err := prog.ReadAt(interp, 0); err != nil {
					return fmt.Errorf("%s: PT_INTERP: %w", p, err)
				}
				if err := add(strings.TrimRight(string(interp), "\x00")); err != nil {
					return err
				}
			}
		}
		libs, err := f.ImportedLibraries()
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		for _, lib := range libs {
			found := ""
			for _, dir := range []string{"/lib/" + a.triplet, "/usr/lib/" + a.triplet} {
				if _, err := resolveIn(root, path.Join(dir, lib)); err == nil {
					found = path.Join(dir, lib)
					break
				}
			}
			if found == "" {
				return fmt.Errorf("%s needs %s, in none of the packages %v", p, lib, guestPackages)
			}
			if err := add(found); err != nil {
				return err
			}
		}
		return nil
	}
	for _, p := range hostPrograms {
		if err := add(p); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// fetchPackages downloads pkgs of bookworm for a and unpacks them into root.
func fetchPackages(root string, a arch, pkgs []string, logf func(string, ...any)) error {
	apt, err := newApt(suites[1], a.goarch, logf)
	if err != nil {
		return err
	}
	defer apt.close()
	logf("apt-get download %s (%s)", strings.Join(pkgs, " "), a.goarch)
	debs, err := apt.download(pkgs...)
	if err != nil {
		return err
	}
	os.RemoveAll(root)
	for _, deb := range debs {
		if out, err := exec.Command("dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
			return fmt.Errorf("dpkg-deb -x %s: %w\n%s", deb, err, out)
		}
	}
	return os.WriteFile(filepath.Join(root, ".complete"), nil, 0o644)
}

// resolveIn returns the file of root that the guest path p names,
// following symbolic links inside root (an absolute target is root's, not
// the host's), and the merged /usr: /lib, /bin and /sbin are /usr's.
func resolveIn(root, p string) (string, error) {
	for hops := 0; hops < 16; hops++ {
		host := filepath.Join(root, p)
		st, err := os.Lstat(host)
		if err != nil {
			for _, d := range []string{"/lib/", "/bin/", "/sbin/"} {
				if strings.HasPrefix(p, d) {
					if _, uerr := os.Lstat(filepath.Join(root, "/usr"+p)); uerr == nil {
						p, err = "/usr"+p, nil
					}
					break
				}
			}
			if err != nil {
				return "", err
			}
			continue
		}
		if st.Mode()&os.ModeSymlink == 0 {
			return host, nil
		}
		target, err := os.Readlink(host)
		if err != nil {
			return "", err
		}
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(p), target)
		}
		p = target
	}
	return "", fmt.Errorf("%s: too many symbolic links", p)
}
