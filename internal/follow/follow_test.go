package follow_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/rlimit"

	"github.com/ctxwatch/ctxwatch/internal/follow"
	"github.com/ctxwatch/ctxwatch/internal/testkit"
)

func TestMain(m *testing.M) {
	if os.Geteuid() == 0 {
		// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK.
		if err := rlimit.RemoveMemlock(); err != nil {
			fmt.Fprintln(os.Stderr, "remove the memlock limit:", err)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

func newFollower(t *testing.T, opts follow.Options) *follow.Follower {
	t.Helper()
	testkit.RequireBPF(t, "following execs (tp_btf programs)", testkit.HaveBTF)
	f, err := follow.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// shell starts sh running script once a line arrives on its stdin, so that
// the test decides when it executes something. It returns once sh runs:
// the exec of sh itself is over, its report (if any) already made.
func shell(t *testing.T, script string) (*exec.Cmd, io.WriteCloser) {
	t.Helper()
	cmd := exec.Command("sh", "-c", "echo ready; read go; "+script)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
		t.Fatalf("sh did not start: %q, %v", line, err)
	}
	return cmd, in
}

// execs returns the execs reported within d.
func execs(t *testing.T, f *follow.Follower, d time.Duration) []follow.Exec {
	t.Helper()
	f.SetDeadline(time.Now().Add(d))
	var got []follow.Exec
	for {
		ex, err := f.Next()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ex)
	}
}

// state is the one-letter state of process pid ('T' when stopped).
func state(t *testing.T, pid int) byte {
	t.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(stat)
	return s[strings.LastIndexByte(s, ')')+2]
}

// TestWatch: a watched process's exec is reported and the process runs on
// (not stopped); the programs its children execute are not reported.
func TestWatch(t *testing.T) {
	f := newFollower(t, follow.Options{})
	sh, in := shell(t, "/bin/true; exec sleep 30")
	if err := f.Watch(sh.Process.Pid); err != nil {
		t.Fatal(err)
	}
	before := follow.Now()
	fmt.Fprintln(in, "go")
	got := execs(t, f, 2*time.Second)
	if len(got) != 1 || got[0].PID != sh.Process.Pid || got[0].Stopped {
		t.Fatalf("execs %+v, want only the watched pid %d's, not stopped", got, sh.Process.Pid)
	}
	// The agent compares At with follow.Now read before it inspects a
	// process: the same clock, the exec's own time.
	if at := got[0].At; at < before || at > follow.Now() {
		t.Errorf("exec at %d, want between %d (before the shell was told to exec) and now", at, before)
	}
	if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", sh.Process.Pid)); !strings.HasSuffix(exe, "/sleep") {
		t.Errorf("pid %d runs %s, want sleep", sh.Process.Pid, exe)
	}
	if s := state(t, sh.Process.Pid); s == 'T' {
		t.Errorf("watched process stopped (state %c) at exec", s)
	}

	// Unwatched, its next exec is not reported.
	sh2, in2 := shell(t, "exec sleep 30")
	if err := f.Watch(sh2.Process.Pid); err != nil {
		t.Fatal(err)
	}
	f.Unwatch(sh2.Process.Pid)
	fmt.Fprintln(in2, "go")
	if got := execs(t, f, time.Second); len(got) != 0 {
		t.Errorf("execs %+v after Unwatch, want none", got)
	}
}

// TestFollow: the children of a followed process are stopped right after
// exec, reported, and run on after Resume.
func TestFollow(t *testing.T) {
	f := newFollower(t, follow.Options{})
	sh, in := shell(t, "sleep 30")
	if err := f.Add(sh.Process.Pid); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(in, "go")
	got := execs(t, f, 2*time.Second)
	if len(got) != 1 || got[0].PID == sh.Process.Pid || !got[0].Stopped {
		t.Fatalf("execs %+v, want one stopped child of pid %d", got, sh.Process.Pid)
	}
	child := got[0].PID
	if s := state(t, child); s != 'T' {
		t.Errorf("followed child %d in state %c after exec, want T (stopped)", child, s)
	}
	if err := follow.Resume(child); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for state(t, child) == 'T' && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s := state(t, child); s == 'T' {
		t.Errorf("child %d still stopped after Resume", child)
	}
}

// TestAllExecs: with AllExecs any process's exec is reported, and not
// stopped; without it, the same exec is not.
func TestAllExecs(t *testing.T) {
	for _, all := range []bool{true, false} {
		t.Run(fmt.Sprint("AllExecs=", all), func(t *testing.T) {
			f := newFollower(t, follow.Options{AllExecs: all})
			sh, in := shell(t, "exec sleep 30")
			execs(t, f, 100*time.Millisecond) // the exec of sh itself, with AllExecs
			fmt.Fprintln(in, "go")
			var mine []follow.Exec
			for _, ex := range execs(t, f, 2*time.Second) {
				if ex.PID == sh.Process.Pid {
					ex.At = 0 // checked in TestWatch
					mine = append(mine, ex)
				}
			}
			want := []follow.Exec(nil)
			if all {
				want = []follow.Exec{{PID: sh.Process.Pid}}
			}
			if fmt.Sprint(mine) != fmt.Sprint(want) {
				t.Errorf("execs of pid %d: %+v, want %+v", sh.Process.Pid, mine, want)
			}
			if s := state(t, sh.Process.Pid); s == 'T' {
				t.Errorf("process stopped at exec (state %c)", s)
			}
			if n, err := f.Lost(); err != nil || n != 0 {
				t.Errorf("Lost() = %d, %v; want 0", n, err)
			}
		})
	}
}
