// Package container tells which container and Kubernetes pod a process
// runs in, from its cgroup path: the id the runtime named the container's
// cgroup after, and the pod UID the kubelet named the pod's cgroup after.
// It needs no container runtime or API server: the OpenTelemetry
// collector's k8sattributes processor turns these into names.
package container

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"
)

// Identity is where a process runs. Both fields are empty for a process
// in no container (a host service, a shell).
type Identity struct {
	ContainerID string // 64 hex digits, as `crictl ps` and `docker ps --no-trunc` show it
	PodUID      string // with dashes, as the API server shows metadata.uid
}

// Of reads the identity of process pid from procfs (e.g. "/proc").
func Of(procfs string, pid int) (Identity, error) {
	data, err := os.ReadFile(fmt.Sprintf("%s/%d/cgroup", procfs, pid))
	if err != nil {
		return Identity{}, fmt.Errorf("read cgroup of pid %d: %w", pid, err)
	}
	return Parse(data), nil
}

// Parse reads the identity from the contents of /proc/PID/cgroup, of
// cgroup v2 ("0::/path") or v1 (a line per hierarchy, the first one that
// names a container wins). It knows the systemd and cgroupfs layouts of
// the kubelet and the naming of containerd, CRI-O, Docker and Podman:
//
//	/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope
//	/kubepods/besteffort/pod<uid>/<id>
//	/system.slice/docker-<id>.scope, /docker/<id>
//	/libpod_parent/libpod-<id>, /libpod_parent/<pod id>/libpod-<id>
//
// A path seen from inside another cgroup namespace starts with "/.." and
// is read the same way.
func Parse(cgroup []byte) Identity {
	var id Identity
	sc := bufio.NewScanner(bytes.NewReader(cgroup))
	for sc.Scan() {
		// hierarchy-ID:controller-list:cgroup-path; the path may hold ':'.
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		got := parsePath(parts[2])
		if id.ContainerID == "" {
			id.ContainerID = got.ContainerID
		}
		if id.PodUID == "" {
			id.PodUID = got.PodUID
		}
		if id.ContainerID != "" && id.PodUID != "" {
			break
		}
	}
	return id
}

func parsePath(path string) Identity {
	var id Identity
	for _, c := range strings.Split(path, "/") {
		if uid := podUID(c); uid != "" {
			id.PodUID = uid
		}
		// The innermost container-looking component wins: a runtime may
		// nest (a kind node's containerd inside Docker).
		if cid := containerID(c); cid != "" {
			id.ContainerID = cid
		}
	}
	return id
}

// Runtime prefixes of systemd scope names. CRI-O's conmon scope
// (crio-conmon-<id>.scope) holds the monitor, not the container.
var scopePrefixes = []string{"cri-containerd-", "crio-", "docker-", "libpod-", "containerd-"}

func containerID(c string) string {
	if strings.HasPrefix(c, "crio-conmon-") {
		return ""
	}
	// The systemd driver names a scope "<prefix><id>.scope"; Podman's
	// cgroupfs driver names the cgroup "libpod-<id>" (under libpod_parent,
	// or under libpod_parent/<pod id> in a pod): the same without ".scope".
	s, scope := strings.CutSuffix(c, ".scope")
	for _, p := range scopePrefixes {
		if id, ok := strings.CutPrefix(s, p); ok && isID(id) {
			return id
		}
	}
	if !scope && isID(c) { // cgroupfs driver: the bare id
		return c
	}
	return ""
}

func isID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) {
			return false
		}
	}
	return true
}

func isHex(b byte) bool {
	return '0' <= b && b <= '9' || 'a' <= b && b <= 'f'
}

// podUID reads the pod UID from a kubelet cgroup name: "pod<uid>"
// (cgroupfs) or "kubepods[-<qos>]-pod<uid>.slice" (systemd, with the
// UID's dashes turned to underscores, as systemd unit names need).
func podUID(c string) string {
	var uid string
	if s, ok := strings.CutSuffix(c, ".slice"); ok {
		i := strings.LastIndex(s, "-pod")
		if !strings.HasPrefix(s, "kubepods") || i < 0 {
			return ""
		}
		uid = strings.ReplaceAll(s[i+len("-pod"):], "_", "-")
	} else if s, ok := strings.CutPrefix(c, "pod"); ok {
		uid = s
	} else {
		return ""
	}
	if !isUID(uid) {
		return ""
	}
	return uid
}

// isUID accepts a UUID in its 8-4-4-4-12 form.
func isUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHex(s[i]) {
				return false
			}
		}
	}
	return true
}
