package container

import (
	"os"
	"strings"
	"testing"
)

const (
	cid = "3f1c2a9d8b7e6f5a4c3b2a190807060504030201ffeeddccbbaa998877665544"
	uid = "6b2e1f0c-9a8d-4e7f-b6a5-c4d3e2f1a0b9"
)

func TestParse(t *testing.T) {
	uscore := strings.ReplaceAll(uid, "-", "_")
	for _, tc := range []struct {
		name, cgroup string
		want         Identity
	}{
		{"v2 systemd containerd burstable",
			"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uscore + ".slice/cri-containerd-" + cid + ".scope\n",
			Identity{cid, uid}},
		{"v2 systemd crio besteffort",
			"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uscore + ".slice/crio-" + cid + ".scope\n",
			Identity{cid, uid}},
		{"v2 systemd guaranteed",
			"0::/kubepods.slice/kubepods-pod" + uscore + ".slice/cri-containerd-" + cid + ".scope\n",
			Identity{cid, uid}},
		{"v2 cgroupfs",
			"0::/kubepods/burstable/pod" + uid + "/" + cid + "\n",
			Identity{cid, uid}},
		{"v2 seen from a cgroup namespace",
			"0::/../../kubepods-besteffort-pod" + uscore + ".slice/cri-containerd-" + cid + ".scope\n",
			Identity{cid, uid}},
		{"v1 cgroupfs",
			"12:pids:/kubepods/besteffort/pod" + uid + "/" + cid + "\n" +
				"11:memory:/kubepods/besteffort/pod" + uid + "/" + cid + "\n" +
				"1:name=systemd:/kubepods/besteffort/pod" + uid + "/" + cid + "\n",
			Identity{cid, uid}},
		{"v1 with the container only in some hierarchies",
			"12:rdma:/\n5:cpu,cpuacct:/kubepods.slice/kubepods-pod" + uscore + ".slice/crio-" + cid + ".scope\n",
			Identity{cid, uid}},
		{"crio conmon is not the container",
			"0::/kubepods.slice/kubepods-pod" + uscore + ".slice/crio-conmon-" + cid + ".scope\n",
			Identity{"", uid}},
		{"docker systemd", "0::/system.slice/docker-" + cid + ".scope\n", Identity{cid, ""}},
		{"docker cgroupfs v1", "4:memory:/docker/" + cid + "\n", Identity{cid, ""}},
		{"podman", "0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + cid + ".scope\n", Identity{cid, ""}},
		// Podman's cgroupfs driver, as podman run and a pod of podman
		// kube play lay it out on a cgroup v1 host (deploy/container_test.go
		// runs the agent beside them): the pod's bare id is not the
		// container's.
		{"podman cgroupfs v1",
			"9:name=systemd:/libpod_parent/libpod-" + cid + "\n8:pids:/libpod_parent/libpod-" + cid + "\n",
			Identity{cid, ""}},
		{"podman cgroupfs pod",
			"0::/libpod_parent/" + strings.Repeat("ab", 32) + "/libpod-" + cid + "\n",
			Identity{cid, ""}},
		{"podman conmon is not the container", "0::/libpod_parent/libpod-conmon-" + cid + "\n", Identity{}},
		{"unknown scope", "0::/system.slice/" + cid + ".scope\n", Identity{}},
		{"host service", "0::/system.slice/ssh.service\n", Identity{}},
		{"root", "0::/\n", Identity{}},
		{"not hex", "0::/system.slice/docker-" + strings.Repeat("z", 64) + ".scope\n", Identity{}},
		{"short id", "0::/docker/" + cid[:12] + "\n", Identity{}},
		{"malformed pod", "0::/kubepods/burstable/podnotauid/" + cid + "\n", Identity{cid, ""}},
		{"empty", "", Identity{}},
		{"garbage", "no colons here\n::\n", Identity{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Parse([]byte(tc.cgroup)); got != tc.want {
				t.Errorf("Parse(%q)\n = %+v\nwant %+v", tc.cgroup, got, tc.want)
			}
		})
	}
}

func TestOfSelf(t *testing.T) {
	// This process's own cgroup file: read and parsed without error,
	// whatever it holds.
	want, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Skipf("no /proc/self/cgroup: %v", err)
	}
	got, err := Of("/proc", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if got != Parse(want) {
		t.Errorf("Of = %+v, Parse of the same file = %+v", got, Parse(want))
	}
}
