package fuzzseed_test

import (
	"bytes"
	"debug/elf"
	"slices"
	"testing"

	"github.com/ctxwatch/ctxwatch/internal/pcln"
	"github.com/ctxwatch/ctxwatch/internal/testkit/fuzzseed"
)

// TestCutFrames checks that a cut table is the real one for the functions
// it keeps: the same names, and the same frames (function, file, line,
// inlined calls) at every pc of their code, as read by internal/pcln from
// the whole binary.
func TestCutFrames(t *testing.T) {
	for _, mode := range []string{"default", "pie", "cgo"} {
		t.Run(mode, func(t *testing.T) {
			path, err := fuzzseed.Build(t.TempDir(), mode, "amd64")
			if err != nil {
				t.Fatal(err)
			}
			g, err := fuzzseed.Cut(path, fuzzseed.Keep, 64)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(g.Funcs, "main.work") || !slices.Contains(g.Funcs, "context.WithValue") {
				t.Fatalf("cut kept %v, want main.work and context.WithValue among them", g.Funcs)
			}
			realFile, err := elf.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer realFile.Close()
			real, err := pcln.New(realFile)
			if err != nil {
				t.Fatal(err)
			}
			// ABI wrappers share their function's name: the k-th
			// function of a name in the cut is the k-th in the binary.
			realFuncs := map[string][]pcln.Func{}
			rf, _ := real.Funcs()
			for _, f := range rf {
				realFuncs[real.Name(f)] = append(realFuncs[real.Name(f)], f)
			}
			for _, stripped := range []bool{false, true} {
				image := g.ELF(stripped)
				ef, err := elf.NewFile(bytes.NewReader(image))
				if err != nil {
					t.Fatalf("stripped=%v: written ELF: %v", stripped, err)
				}
				cut, err := pcln.NewMapped(ef, image, nil)
				if err != nil {
					t.Fatalf("stripped=%v: pcln.NewMapped: %v", stripped, err)
				}
				funcs, err := cut.Funcs()
				if err != nil {
					t.Fatal(err)
				}
				var names []string
				seen := map[string]int{}
				inlined := 0
				for _, f := range funcs {
					name := cut.Name(f)
					names = append(names, name)
					r := realFuncs[name][seen[name]]
					seen[name]++
					if f.End-f.Entry != r.End-r.Entry {
						t.Errorf("%s: %d bytes, want %d", name, f.End-f.Entry, r.End-r.Entry)
						continue
					}
					for off := uint64(0); off < f.End-f.Entry; off++ {
						got, err1 := cut.Frames(f.Entry + off)
						want, err2 := real.Frames(r.Entry + off)
						if err1 != nil || err2 != nil {
							t.Fatalf("%s+%#x: Frames: cut %v, real %v", name, off, err1, err2)
						}
						if !sameFrames(got, want) {
							t.Fatalf("%s+%#x: cut frames %v, real %v", name, off, got, want)
						}
						if len(got) > 1 {
							inlined++
						}
					}
				}
				if !slices.Equal(names, g.Funcs) {
					t.Errorf("cut table lists %v, want %v", names, g.Funcs)
				}
				if inlined == 0 {
					t.Errorf("no pc of the cut functions is in inlined code: the inline trees were not exercised")
				}
			}
		})
	}
}

func sameFrames(a, b []pcln.Frame) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Function != b[i].Function || a[i].File != b[i].File || a[i].Line != b[i].Line || a[i].Inlined != b[i].Inlined || a[i].StartLine != b[i].StartLine {
			return false
		}
	}
	return true
}
