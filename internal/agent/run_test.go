package agent

import (
	"io"
	"log"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ctxwatch/ctxwatch/internal/analysis"
	"github.com/ctxwatch/ctxwatch/internal/findings"
	"github.com/ctxwatch/ctxwatch/internal/testkit"
)

// The test binary is also the target: a Go program that sleeps for
// $CTXWATCH_AGENT_SLEEP (or until its stdin closes, for "stdin") and exits
// with $CTXWATCH_AGENT_EXIT.
func TestMain(m *testing.M) {
	if d := os.Getenv("CTXWATCH_AGENT_SLEEP"); d != "" {
		if d == "stdin" {
			io.Copy(io.Discard, os.Stdin) // until the test closes it
		} else {
			sleep, _ := time.ParseDuration(d)
			time.Sleep(sleep)
		}
		code, _ := strconv.Atoi(os.Getenv("CTXWATCH_AGENT_EXIT"))
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// summaries is a findings.Sink that keeps the summaries.
type summaries struct{ got []findings.Summary }

func (s *summaries) Break(findings.Process, analysis.Break) error { return nil }
func (s *summaries) Summary(sum findings.Summary) error {
	s.got = append(s.got, sum)
	return nil
}

func testConfig(sink findings.Sink, sigs <-chan os.Signal) Config {
	quiet := log.New(io.Discard, "", 0)
	return Config{RingSize: 1 << 20, Sink: sink, Log: quiet, Warn: quiet, Signals: sigs}
}

// TestRunStops: Run says why a watch ended, passes on a command's exit
// status, and summarises the process it watched.
func TestRunStops(t *testing.T) {
	testkit.RequireBPF(t, "running the agent", nil)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}

	t.Run("command exits", func(t *testing.T) {
		t.Setenv("CTXWATCH_AGENT_SLEEP", "100ms")
		t.Setenv("CTXWATCH_AGENT_EXIT", "7")
		var s summaries
		res, err := Run(testConfig(&s, nil), Target{Command: []string{self}})
		if err != nil {
			t.Fatal(err)
		}
		if res.Stop != StopExited || res.Code != 7 {
			t.Errorf("Run = %v, code %d; want exited, code 7", res.Stop, res.Code)
		}
		if len(s.got) != 1 {
			t.Errorf("%d summaries, want 1 (the command)", len(s.got))
		}
	})

	start := func(t *testing.T) *exec.Cmd {
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), "CTXWATCH_AGENT_SLEEP=60s")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}

	t.Run("duration", func(t *testing.T) {
		cmd := start(t)
		cfg := testConfig(&summaries{}, nil)
		cfg.Duration = 500 * time.Millisecond
		res, err := Run(cfg, Target{PID: cmd.Process.Pid})
		if err != nil {
			t.Fatal(err)
		}
		if res.Stop != StopDuration {
			t.Errorf("Run = %v, want duration", res.Stop)
		}
	})

	t.Run("signal", func(t *testing.T) {
		cmd := start(t)
		sigs := make(chan os.Signal, 1)
		time.AfterFunc(500*time.Millisecond, func() { sigs <- syscall.SIGTERM })
		res, err := Run(testConfig(&summaries{}, sigs), Target{PID: cmd.Process.Pid})
		if err != nil {
			t.Fatal(err)
		}
		if res.Stop != StopSignal {
			t.Errorf("Run = %v, want signal", res.Stop)
		}
	})

	t.Run("process exits", func(t *testing.T) {
		// The target exits when its stdin closes, which the test does
		// once the agent says it watches the process: however long the
		// attach takes (seconds under emulation), the exit comes after.
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), "CTXWATCH_AGENT_SLEEP=stdin")
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go cmd.Wait() // reaped, so that its pidfd says it exited
		cfg := testConfig(&summaries{}, nil)
		watching := make(chan struct{})
		var once sync.Once
		cfg.Log = log.New(lineFunc(func(line string) {
			if strings.Contains(line, "watching pid") {
				once.Do(func() { close(watching) })
			}
		}), "", 0)
		go func() {
			<-watching
			stdin.Close()
		}()
		res, err := Run(cfg, Target{PID: cmd.Process.Pid})
		if err != nil {
			t.Fatal(err)
		}
		if res.Stop != StopExited {
			t.Errorf("Run = %v, want exited", res.Stop)
		}
	})

	t.Run("bad target", func(t *testing.T) {
		res, err := Run(testConfig(&summaries{}, nil), Target{})
		if err == nil || res.Stop != StopFailed {
			t.Errorf("Run with no target = %v, %v; want failed with an error", res.Stop, err)
		}
	})
}

// lineFunc is a log writer that passes each line to a func; the agent logs
// one line per Write.
type lineFunc func(string)

func (f lineFunc) Write(p []byte) (int, error) {
	f(string(p))
	return len(p), nil
}
