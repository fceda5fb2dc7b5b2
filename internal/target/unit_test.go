package target

import (
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

func TestGoVersionAtLeast(t *testing.T) {
	for _, c := range []struct {
		v    string
		want bool
	}{
		{"go1.17", true},
		{"go1.17.13", true},
		{"go1.26.8", true},
		{"go1.21rc2", true},
		{"go1.18beta1", true},
		{"go2.0", true},
		{"go1.16", false},
		{"go1.16.15", false},
		{"go1.9", false},
		{"go1.2", false},
		{"go1.17rc1 X:boringcrypto", true},
		{"devel go1.27-abcdef Mon Jan 1", true},
		{"", false},
		{"go", false},
		{"gox.y", false},
	} {
		if got := goVersionAtLeast(c.v, 1, 17); got != c.want {
			t.Errorf("goVersionAtLeast(%q, 1, 17) = %v, want %v", c.v, got, c.want)
		}
	}
}

func TestIsUserFunc(t *testing.T) {
	extra := []string{"github.com/a/b", "gopkg.in/yaml.v3/"}
	for _, c := range []struct {
		name string
		want bool
	}{
		{"main.main", true},
		{"main.main.func1", true},
		{"main.(*T).M", true},
		{"main.F[go.shape.int]", true},
		{"example.com/probe.F", true},
		{"example.com/probe/internal/x.(*T).M", true},
		{"example.com/prober.F", false},
		{"github.com/a/b.F", true},
		{"github.com/a/b/c.(*T).M", true},
		{"github.com/a/bc.F", false},
		{"gopkg.in/yaml.v3.Unmarshal", true},
		{"gopkg.in/yaml%2ev3.Unmarshal", true},
		{"gopkg.in/yaml%2ev3/sub.F", true},
		{"gopkg.in/yaml%2ev2.Unmarshal", false},
		{"gopkg.in/yaml.v2.Unmarshal", false},
		{"runtime.newproc1", false},
		{"context.WithValue", false},
		{"mainx.F", false},
		{"fmt.Sprint[example.com/probe.T]", false},
		{"type:.eq.main.T", false},
	} {
		if got := IsUserFunc(c.name, "example.com/probe", extra); got != c.want {
			t.Errorf("IsUserFunc(%q) = %v, want %v", c.name, got, c.want)
		}
	}
	// Main modules of one path element, whose dots the linker escapes.
	for _, c := range []struct {
		name, module string
		want         bool
	}{
		{"example%2ecom.F", "example.com", true},
		{"example.com.F", "example.com", true},
		{"example.com/x.F", "example.com", true},
		{"example%2ecomx.F", "example.com", false},
		{"example.F", "example", true},
		{"example/x.(*T).M", "example", true},
		{"examples.F", "example", false},
		{"runtime.main", "", false},
	} {
		if got := IsUserFunc(c.name, c.module, nil); got != c.want {
			t.Errorf("IsUserFunc(%q, main module %q) = %v, want %v", c.name, c.module, got, c.want)
		}
	}
}

func TestPackagePath(t *testing.T) {
	for name, want := range map[string]string{
		"main.main":                    "main",
		"gopkg.in/yaml%2ev3.Unmarshal": "gopkg.in/yaml.v3",
		"gopkg.in/yaml.v3.Unmarshal":   "gopkg.in/yaml",
		"go.opentelemetry.io/otel/sdk/trace.(*recordingSpan).End": "go.opentelemetry.io/otel/sdk/trace",
		"fmt.Sprint[example.com/probe.T]":                         "fmt",
		"nodot":                                                   "",
	} {
		if got := PackagePath(name); got != want {
			t.Errorf("PackagePath(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestProtectedReg(t *testing.T) {
	for r, want := range map[x86asm.Reg]bool{
		x86asm.RAX: true, x86asm.EAX: true, x86asm.AL: true, x86asm.AH: true, x86asm.R14: true,
		x86asm.R14L: true, x86asm.SP: true, x86asm.R11B: true, x86asm.SIB: true, x86asm.BH: true,
		x86asm.RDX: false, x86asm.DH: false, x86asm.R12: false, x86asm.R12W: false, x86asm.RBP: false, x86asm.R15: false,
	} {
		if got := protectedReg(r); got != want {
			t.Errorf("protectedReg(%v) = %v, want %v", r, got, want)
		}
	}
}
