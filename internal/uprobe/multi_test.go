package uprobe

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/ctxwatch/ctxwatch/internal/target"
	"github.com/ctxwatch/ctxwatch/internal/testkit"
)

// busyTarget calls context.WithValue, spawns goroutines and runs
// selects, 16 of them in functions of their own, without end: a program
// (select_enter) with several probes in the process.
var busyTarget = func() string {
	src := `package main

import (
	"context"
	"time"
)

type key struct{}

var a, b = make(chan int), make(chan int)

func main() {
	ctx := context.Background()
	for i := 0; ; i++ {
		c := context.WithValue(ctx, key{}, i)
		go func() { _ = c.Value(key{}) }()
`
	for i := 0; i < 16; i++ {
		src += fmt.Sprintf("\t\tsel%d()\n", i)
	}
	src += "\t\ttime.Sleep(time.Millisecond)\n\t}\n}\n"
	for i := 0; i < 16; i++ {
		src += fmt.Sprintf("\n//go:noinline\nfunc sel%d() {\n\tselect {\n\tcase <-a:\n\tcase <-b:\n\tdefault:\n\t}\n}\n", i)
	}
	return src
}()

// TestMultiLinks: where the kernel has uprobe_multi links, a program's
// probes in a process are placed by one link, not one per probe, and they
// fire, come out and go back in as single links do; with SingleLinks, one
// link per probe.
func TestMultiLinks(t *testing.T) {
	testkit.RequireBPF(t, "attaching uprobes", nil)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(busyTarget), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module busy\n\ngo 1.21\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "busy")
	build := exec.Command("go", "build", "-o", exe, ".")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the target: %v\n%s", err, out)
	}
	cmd := exec.Command(exe)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()

	bin, err := target.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	plan, err := NewPlan(bin, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ef, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	bias, err := LoadBias(cmd.Process.Pid, ef)
	if err != nil {
		t.Fatal(err)
	}
	cfg, points, err := plan.ForProcess(cmd.Process.Pid, bias, bin.FileOffset)
	if err != nil {
		t.Fatal(err)
	}
	progs := map[Program]bool{}
	for _, pt := range points {
		progs[pt.Program] = true
	}
	if !progs[WithValue] || !progs[Spawn] || !progs[SelectEnter] || len(points) < 32 {
		t.Fatalf("plan without with_value, spawn and 16 selects' probes: %+v", points)
	}

	for _, single := range []bool{false, true} {
		name := map[bool]string{false: "multi", true: "single"}[single]
		t.Run(name, func(t *testing.T) {
			if !single && !MultiLinks() {
				t.Skip("this kernel has no uprobe_multi links (Linux 6.6 and later)")
			}
			cfg := cfg
			cfg.SingleLinks = single
			p, err := Load(cfg, Maps{})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if p.Multi() == single {
				t.Fatalf("Multi() = %v with SingleLinks %v", p.Multi(), single)
			}
			t0 := time.Now()
			if err := p.Attach(exe, points); err != nil {
				t.Fatal(err)
			}
			attach := time.Since(t0)
			want := len(points)
			if !single {
				want = len(progs)
			}
			if len(p.links) != want {
				t.Errorf("%d links for %d probes of %d programs, want %d", len(p.links), len(points), len(progs), want)
			}
			if p.spawnLinks != 1 && !single || p.spawnLinks == 0 {
				t.Errorf("%d spawn links", p.spawnLinks)
			}
			hitsAfter := func(d time.Duration) uint64 {
				h0, err := p.Hits()
				if err != nil {
					t.Fatal(err)
				}
				time.Sleep(d)
				h1, err := p.Hits()
				if err != nil {
					t.Fatal(err)
				}
				return h1 - h0
			}
			if n := hitsAfter(300 * time.Millisecond); n == 0 {
				t.Error("no probe hit in 300ms while attached")
			}
			t0 = time.Now()
			if err := p.Detach(); err != nil {
				t.Fatal(err)
			}
			detach := time.Since(t0)
			if n := hitsAfter(300 * time.Millisecond); n != 0 {
				t.Errorf("%d probe hits in 300ms while detached", n)
			}
			if err := p.Reattach(); err != nil {
				t.Fatal(err)
			}
			if n := hitsAfter(300 * time.Millisecond); n == 0 {
				t.Error("no probe hit in 300ms after Reattach")
			}
			t.Logf("%d probes in %d links: attach %s, detach %s", len(points), len(p.links), attach, detach)
		})
	}
}
