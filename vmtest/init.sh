#!/bin/busybox sh
# /init of vmtest's initramfs: mount what ctxwatch and its tests use, run
# the test binaries, print one marker line per binary and power off.
# vmtest (on the host) reads the markers from the serial console.
# The first, before anything else: under KVM, a guest that has not printed
# it within 30s is one KVM does not run (boot.go's kvmWatch).
echo VMTEST-INIT
/bin/busybox --install -s /bin
export PATH=/usr/bin:/bin:/usr/sbin:/sbin HOME=/root SHELL=/bin/sh TERM=linux LANG=C.UTF-8
export CTXWATCH_TEST_BIN=/ctxwatch/bin GOTOOLCHAIN=local

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /sys/fs/bpf /sys/fs/cgroup
mount -t devpts -o ptmxmode=0666 devpts /dev/pts
# No tmpfs on /tmp: the initramfs is writable already, and the sources the
# tests read sit at the host's paths, which may be under /tmp (a CI clone).
mount -t tmpfs tmpfs /dev/shm
mount -t debugfs debugfs /sys/kernel/debug
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
ip link set lo up
hostname vmtest

echo "vmtest: kernel $(uname -r), $(nproc) cpus, $(awk '/MemTotal/ {print $2 " kB"}' /proc/meminfo)"
if [ -e /sys/kernel/btf/vmlinux ]; then
	echo "vmtest: BTF at /sys/kernel/btf/vmlinux"
else
	echo "vmtest: no /sys/kernel/btf/vmlinux"
fi
# From the kernel command line (vmtest's qemuArgs): set under TCG only.
echo "vmtest: CTXWATCH_TEST_SLOW=${CTXWATCH_TEST_SLOW:-unset}"

# run_suite NAME DIR BINARY ARGS...: run a test binary in DIR.
run_suite() {
	name=$1 dir=$2 binary=$3
	shift 3
	echo "VMTEST-START $name"
	start=$(date +%s)
	(cd "$dir" && "$binary" "$@")
	rc=$?
	echo "VMTEST-RESULT $name rc=$rc seconds=$(( $(date +%s) - start ))"
}

#SUITES#
echo "VMTEST-DONE"
sync
poweroff -f
