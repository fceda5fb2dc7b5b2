package uprobe_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/ctxwatch/ctxwatch/internal/testkit"
	"github.com/ctxwatch/ctxwatch/internal/uprobe"
)

func needRoot(t *testing.T) {
	t.Helper()
	testkit.RequireBPF(t, "loading eBPF programs", nil)
}

// TestLoadVerifies loads every program of bpf/ctxwatch.c into the kernel:
// the verifier must accept them all, whatever the layout.
func TestLoadVerifies(t *testing.T) {
	needRoot(t)
	p, err := uprobe.Load(uprobe.Config{PID: os.Getpid()}, uprobe.Maps{})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	defer p.Close()
	if p.Events() == nil {
		t.Error("Events() is nil without a shared ring buffer")
	} else if typ := p.Events().Type(); typ != ebpf.RingBuf {
		t.Errorf("Events() is a %v, want a ring buffer", typ)
	}
	s, err := p.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if s != (uprobe.Stats{}) {
		t.Errorf("Stats() of a fresh program = %+v, want zeros", s)
	}
}

func TestLoadWithKeysAndRanges(t *testing.T) {
	needRoot(t)
	cfg := uprobe.Config{
		PID: os.Getpid(),
		Keys: []uprobe.Key{
			{Kind: uprobe.KeyType, Type: 0x4a0000},
			{Kind: uprobe.KeyString, Text: "trace_id"},
			{Kind: uprobe.KeyString, Text: strings.Repeat("k", uprobe.MaxKeyLen)},
			{Kind: uprobe.KeyType, Type: 0x4b0000},
		},
		UserText: []uprobe.Range{{Start: 0x401000, End: 0x402000}, {Start: 0x500000, End: 0x510000}},
	}
	p, err := uprobe.Load(cfg, uprobe.Maps{})
	if err != nil {
		t.Fatalf("Load with %d keys: %v", len(cfg.Keys), err)
	}
	p.Close()
}

// TestLoadSharedRingBuffer loads with a ring buffer made as the agent makes
// it (cmd/ctxwatch: one per agent, --ring-size bytes, 4 MiB by default):
// the program must write to that one.
func TestLoadSharedRingBuffer(t *testing.T) {
	needRoot(t)
	for _, size := range []uint32{16 << 20, 1 << 20, 64 << 20} {
		rb, err := ebpf.NewMap(&ebpf.MapSpec{Name: "events", Type: ebpf.RingBuf, MaxEntries: size})
		if err != nil {
			t.Fatalf("create ring buffer of %d bytes: %v", size, err)
		}
		p, err := uprobe.Load(uprobe.Config{PID: os.Getpid()}, uprobe.Maps{Events: rb})
		if err != nil {
			rb.Close()
			t.Errorf("Load with a shared ring buffer of %d bytes: %v", size, err)
			continue
		}
		want, err := rb.Info()
		if err != nil {
			t.Fatal(err)
		}
		got, err := p.Events().Info()
		if err != nil {
			t.Fatal(err)
		}
		wid, _ := want.ID()
		gid, _ := got.ID()
		if wid != gid {
			t.Errorf("ring of %d bytes: Events() is map %d, want the shared ring buffer %d", size, gid, wid)
		}
		p.Close()
		rb.Close()
	}
}

func TestLoadTooManyKeys(t *testing.T) {
	keys := make([]uprobe.Key, uprobe.MaxKeys+1)
	for i := range keys {
		keys[i] = uprobe.Key{Kind: uprobe.KeyString, Text: "k"}
	}
	p, err := uprobe.Load(uprobe.Config{PID: os.Getpid(), Keys: keys}, uprobe.Maps{})
	if err == nil {
		p.Close()
		t.Fatal("Load with 5 keys succeeded")
	}
	if !errors.Is(err, uprobe.ErrTooManyKeys) {
		t.Errorf("Load with 5 keys: %v, want ErrTooManyKeys", err)
	}
}

func TestLoadTooManyRanges(t *testing.T) {
	r := make([]uprobe.Range, uprobe.MaxRanges+1)
	for i := range r {
		r[i] = uprobe.Range{Start: uint64(i) * 16, End: uint64(i)*16 + 8}
	}
	p, err := uprobe.Load(uprobe.Config{PID: os.Getpid(), UserText: r}, uprobe.Maps{})
	if err == nil {
		p.Close()
		t.Fatal("Load with too many ranges succeeded")
	}
	if !errors.Is(err, uprobe.ErrTooManyRanges) {
		t.Errorf("Load with %d ranges: %v, want ErrTooManyRanges", len(r), err)
	}
}

func TestLoadLongStringKey(t *testing.T) {
	key := uprobe.Key{Kind: uprobe.KeyString, Text: strings.Repeat("k", uprobe.MaxKeyLen+1)}
	p, err := uprobe.Load(uprobe.Config{PID: os.Getpid(), Keys: []uprobe.Key{key}}, uprobe.Maps{})
	if err == nil {
		p.Close()
		t.Fatal("Load with a 33-byte string key succeeded")
	}
}

// TestLoadGivenGoroutineMap: a goroutine map made ahead of time (while the
// target is inspected) is the one the program uses.
func TestLoadGivenGoroutineMap(t *testing.T) {
	needRoot(t)
	m, err := uprobe.NewGoroutineMap()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	p, err := uprobe.Load(uprobe.Config{PID: os.Getpid()}, uprobe.Maps{Goroutines: m})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := m.Put(uprobe.GoroutineKey(uint32(os.Getpid()), 42), make([]byte, m.ValueSize())); err != nil {
		t.Fatal(err)
	}
	if err := p.ResetGoroutines(); err != nil {
		t.Fatal(err)
	}
	var key uint64
	if err := m.NextKey(nil, &key); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Errorf("goroutine %d still in the given map after the program's reset (%v): not the program's map", key, err)
	}
}
