package layout

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ctxwatch/ctxwatch/internal/layout/probe"
	"github.com/ctxwatch/ctxwatch/internal/target"
)

// goCmd runs the go command in the test's directory (inside the main module)
// and returns its trimmed output.
func goCmd(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("go", args...).Output()
	if err != nil {
		t.Fatalf("go %s: %v", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out))
}

// checkTable proves that every entry of want equals FieldOffset from the
// probe's DWARF, and that every measured field the table leaves out is one
// the binary really does not have.
func checkTable(t *testing.T, b *target.Binary, want map[field]uint64, fields []probe.Field, lookup func(typ, path string) (uint64, bool)) {
	t.Helper()
	for f, off := range want {
		got, err := b.FieldOffset(f.typ, f.path)
		if err != nil {
			t.Errorf("table has %s %s = %d; DWARF: %v", f.typ, f.path, off, err)
			continue
		}
		if got != off {
			t.Errorf("table has %s %s = %d; DWARF says %d", f.typ, f.path, off, got)
		}
		if v, ok := lookup(f.typ, f.path); !ok || v != off {
			t.Errorf("lookup %s %s = %d, %v; table has %d", f.typ, f.path, v, ok, off)
		}
	}
	dwarf, absent, err := probe.Measure(b, fields)
	if err != nil {
		t.Fatal(err)
	}
	for f, off := range dwarf {
		if _, ok := want[field{f.Type, f.Path}]; !ok {
			t.Errorf("DWARF has %s = %d; the table does not", f, off)
		}
	}
	for _, f := range absent {
		if _, ok := lookup(f.Type, f.Path); ok {
			t.Errorf("the probe has no %s, yet the lookup answers", f)
		}
	}
	if len(want) == 0 {
		t.Error("no table entries")
	}
}

func buildCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func openProbe(t *testing.T, bin string) *target.Binary {
	t.Helper()
	b, err := target.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if !b.HasDWARF {
		t.Fatalf("probe %s has no DWARF", bin)
	}
	return b
}

// TestRuntimeLocalToolchain checks the table for the Go version running the
// tests against a probe built with DWARF by the same toolchain.
func TestRuntimeLocalToolchain(t *testing.T) {
	t.Parallel()
	goVersion := goCmd(t, "env", "GOVERSION")
	minor, ok := probe.GoMinor(goVersion)
	if !ok {
		t.Skipf("local toolchain %s is not a release", goVersion)
	}
	key, _ := goMinor(goVersion)
	want, ok := runtimeTable[key]
	if !ok {
		t.Fatalf("table has no entry for %s (has %v); run go generate ./internal/layout", goVersion, Versions())
	}
	bin, err := probe.BuildRuntime(buildCtx(t), t.TempDir(), "local", minor)
	if err != nil {
		t.Fatal(err)
	}
	b := openProbe(t, bin)
	if b.GoVersion != goVersion {
		t.Fatalf("probe built by %s, want %s", b.GoVersion, goVersion)
	}
	checkTable(t, b, want, probe.RuntimeFields, func(typ, path string) (uint64, bool) {
		return Runtime(goVersion, typ, path)
	})
}

// TestOTelModuleVersion checks the table for the OTel SDK version this
// module requires against a probe built with DWARF that imports it.
func TestOTelModuleVersion(t *testing.T) {
	t.Parallel()
	version := goCmd(t, "list", "-m", "-f", "{{.Version}}", probe.OTelSDK)
	key, ok := otelMinor(version)
	if !ok {
		t.Fatalf("OTel SDK version %q is not a release", version)
	}
	want, ok := otelTable[key]
	if !ok {
		t.Fatalf("table has no entry for OTel SDK %s (has %v); run go generate ./internal/layout", version, OTelVersions())
	}
	if otelMeasured[key] != version {
		t.Logf("table for %s was measured with %s", version, otelMeasured[key])
	}
	// Seed the probe's go.sum with this module's, so that it builds from the
	// module cache without asking the checksum database.
	modDir := filepath.Dir(goCmd(t, "env", "GOMOD"))
	goSum, _ := os.ReadFile(filepath.Join(modDir, "go.sum"))
	bin, err := probe.BuildOTel(buildCtx(t), t.TempDir(), "local", version, goSum)
	if err != nil {
		t.Fatal(err)
	}
	b := openProbe(t, bin)
	for _, m := range []string{probe.OTelSDK, probe.OTelTrace} {
		if got := probe.ModuleVersion(b, m); got != version {
			t.Fatalf("probe has %s %q, want %s", m, got, version)
		}
	}
	checkTable(t, b, want, probe.OTelFields, func(typ, path string) (uint64, bool) {
		return OTel(version, typ, path)
	})
}

// TestARM64 checks the tables, measured on amd64, against probes built
// for arm64 by the local toolchain with the OTel SDK this module requires:
// ctxwatch uses the same tables for arm64 programs, which holds only while
// every field of the tables sits at the same offset there.
func TestARM64(t *testing.T) {
	t.Parallel()
	goVersion := goCmd(t, "env", "GOVERSION")
	minor, ok := probe.GoMinor(goVersion)
	if !ok {
		t.Skipf("local toolchain %s is not a release", goVersion)
	}
	key, _ := goMinor(goVersion)
	want, ok := runtimeTable[key]
	if !ok {
		t.Fatalf("table has no entry for %s (has %v)", goVersion, Versions())
	}
	bin, err := probe.BuildRuntimeArch(buildCtx(t), t.TempDir(), "local", "arm64", minor)
	if err != nil {
		t.Fatal(err)
	}
	b := openProbe(t, bin)
	if b.Arch != "arm64" {
		t.Fatalf("runtime probe is %s, want arm64", b.Arch)
	}
	checkTable(t, b, want, probe.RuntimeFields, func(typ, path string) (uint64, bool) {
		return Runtime(goVersion, typ, path)
	})

	version := goCmd(t, "list", "-m", "-f", "{{.Version}}", probe.OTelSDK)
	okey, ok := otelMinor(version)
	if !ok {
		t.Fatalf("OTel SDK version %q is not a release", version)
	}
	owant, ok := otelTable[okey]
	if !ok {
		t.Fatalf("table has no entry for OTel SDK %s", version)
	}
	goSum, _ := os.ReadFile(filepath.Join(filepath.Dir(goCmd(t, "env", "GOMOD")), "go.sum"))
	obin, err := probe.BuildOTelArch(buildCtx(t), t.TempDir(), "local", "arm64", version, goSum)
	if err != nil {
		t.Fatal(err)
	}
	ob := openProbe(t, obin)
	if ob.Arch != "arm64" {
		t.Fatalf("OTel probe is %s, want arm64", ob.Arch)
	}
	checkTable(t, ob, owant, probe.OTelFields, func(typ, path string) (uint64, bool) {
		return OTel(version, typ, path)
	})
}

// ciToolchains are the toolchains TestOtherToolchains checks on every run:
// the oldest, two middle and the newest of the table (as the compat matrix
// of integration/compat_test.go). The go command fetches them through the
// module proxy once; GOMODCACHE keeps them.
var ciToolchains = []string{"go1.17.13", "go1.21.13", "go1.24.13", "go1.27.4"}

// TestOtherToolchains cross-checks the table against probes built with other
// toolchains: those of ciToolchains, or with CTXWATCH_LAYOUT_ALL=1 every
// version of the table.
func TestOtherToolchains(t *testing.T) {
	t.Parallel()
	local := goCmd(t, "env", "GOVERSION")
	versions := ciToolchains
	if os.Getenv("CTXWATCH_LAYOUT_ALL") == "1" {
		versions = nil
		for _, key := range Versions() {
			versions = append(versions, runtimeMeasured[key])
		}
	}
	for _, version := range versions {
		key, _ := goMinor(version)
		if version == local {
			continue
		}
		if runtimeMeasured[key] != version {
			t.Errorf("%s: the table measured %q", version, runtimeMeasured[key])
			continue
		}
		t.Run(version, func(t *testing.T) {
			t.Parallel()
			minor, _ := probe.GoMinor(version)
			bin, err := probe.BuildRuntime(buildCtx(t), t.TempDir(), version, minor)
			if err != nil {
				t.Fatal(err)
			}
			b := openProbe(t, bin)
			if b.GoVersion != version {
				t.Fatalf("probe built by %s, want %s", b.GoVersion, version)
			}
			checkTable(t, b, runtimeTable[key], probe.RuntimeFields, func(typ, path string) (uint64, bool) {
				return Runtime(version, typ, path)
			})
		})
	}
}

func TestUnknownVersions(t *testing.T) {
	for _, v := range []string{"go1.99.1", "go1.16.15", "", "devel go1.27-abcdef", "go1.26rc1", "go1.26.8 X:nocoverageredesign", "go1.26", "1.26.8", "go1.26.08"} {
		if off, ok := Runtime(v, "runtime.g", "goid"); ok {
			t.Errorf("Runtime(%q, runtime.g, goid) = %d, true; want false", v, off)
		}
	}
	for _, v := range []string{"v1.99.0", "v0.20.0", "v1.47.0-rc.1", "v1.47.1-0.20250101000000-abcdefabcdef", "v1.47", "1.47.0"} {
		if off, ok := OTel(v, "go.opentelemetry.io/otel/trace.SpanContext", "spanID"); ok {
			t.Errorf("OTel(%q, ...) = %d, true; want false", v, off)
		}
	}
	if _, ok := Runtime("go1.26.8", "runtime.g", "nosuchfield"); ok {
		t.Error("unknown field answered")
	}
	if _, ok := Runtime("go1.20.14", "runtime.g", "parentGoid"); ok && slices.Contains(Versions(), "go1.20") {
		t.Error("runtime.g.parentGoid answered for Go 1.20, which has none")
	}
}

func TestVersions(t *testing.T) {
	vs := Versions()
	if len(vs) == 0 {
		t.Fatal("no versions")
	}
	for i, v := range vs {
		if _, ok := runtimeMeasured[v]; !ok {
			t.Errorf("%s has no measured version", v)
		}
		if i > 0 && minorOf(vs[i-1]) >= minorOf(v) {
			t.Errorf("Versions() not in order: %v", vs)
		}
		// Any patch release of a minor in the table is answered.
		if _, ok := Runtime(v+".99", "runtime.g", "goid"); !ok {
			t.Errorf("Runtime(%s.99) unanswered", v)
		}
	}
	for _, v := range OTelVersions() {
		if _, ok := otelMeasured[v]; !ok {
			t.Errorf("%s has no measured version", v)
		}
	}
}
