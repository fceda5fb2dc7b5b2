// Command offsetgen measures struct field offsets of the Go runtime, package
// context and OpenTelemetry Go from the DWARF of probe programs built with
// each Go toolchain and OTel SDK version, and writes them as the tables of
// package layout.
//
//	go run ./internal/layout/offsetgen [-toolchains go1.26.8,go1.25.14,...] [-otel v1.47.0,...] -out internal/layout/table.go
//
// Toolchains are fetched by the go command (GOTOOLCHAIN=go1.N.M); one that
// cannot be downloaded or built with is skipped with a warning, and only what
// was measured goes into the table.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"go/format"
	"log"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ctxwatch/ctxwatch/internal/layout/probe"
	"github.com/ctxwatch/ctxwatch/internal/target"
)

const (
	defaultToolchains = "go1.27.4,go1.26.8,go1.25.14,go1.24.13,go1.23.12,go1.22.12,go1.21.13,go1.20.14,go1.19.13,go1.18.10,go1.17.13"
	defaultOTel       = "v1.47.0,v1.46.0,v1.45.0,v1.44.0,v1.43.0,v1.42.0,v1.41.0,v1.40.0,v1.39.0,v1.38.0,v1.37.0,v1.36.0,v1.35.0,v1.34.0,v1.33.0,v1.32.0,v1.31.0,v1.30.0,v1.29.0,v1.28.0,v1.27.0,v1.26.0,v1.25.0,v1.24.0,v1.23.0,v1.22.0,v1.21.0,v1.20.0"
)

// result is what one probe build measured.
type result struct {
	key      string // table key: "go1.26" or "v1.47"
	version  string // exact version measured
	offsets  map[probe.Field]uint64
	absent   []probe.Field
	err      error
	duration time.Duration
}

func main() {
	toolchains := flag.String("toolchains", defaultToolchains, "comma-separated Go toolchains to measure (go1.N.M)")
	otel := flag.String("otel", defaultOTel, "comma-separated OTel SDK versions to measure (vX.Y.Z)")
	out := flag.String("out", "", "output Go file (package layout)")
	jobs := flag.Int("j", 4, "probe builds to run at once")
	timeout := flag.Duration("timeout", 20*time.Minute, "overall time limit")
	flag.Parse()
	if *out == "" {
		log.Fatal("offsetgen: -out is required")
	}
	log.SetFlags(0)
	log.SetPrefix("offsetgen: ")
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	start := time.Now()

	tmp, err := os.MkdirTemp("", "offsetgen-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)

	var rt, ot []*result
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(*jobs, 1))
	spawn := func(r *result, f func(dir string) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			t0 := time.Now()
			dir, err := os.MkdirTemp(tmp, "probe-")
			if err == nil {
				err = f(dir)
			}
			r.err, r.duration = err, time.Since(t0)
		}()
	}
	for _, tc := range split(*toolchains) {
		minor, ok := probe.GoMinor(tc)
		if !ok || strings.Count(tc, ".") != 2 && minor >= 21 {
			log.Printf("warning: skipping toolchain %q: want a release version go1.N.M", tc)
			continue
		}
		r := &result{key: "go1." + strconv.Itoa(minor), version: tc}
		rt = append(rt, r)
		spawn(r, func(dir string) error { return measureRuntime(ctx, dir, r, minor) })
	}
	for _, v := range split(*otel) {
		key, ok := otelMinor(v)
		if !ok {
			log.Printf("warning: skipping OTel version %q: want a release version vX.Y.Z", v)
			continue
		}
		r := &result{key: key, version: v}
		ot = append(ot, r)
		spawn(r, func(dir string) error { return measureOTel(ctx, dir, r) })
	}
	wg.Wait()

	rt = keep(rt, "toolchain")
	ot = keep(ot, "OTel SDK")
	src, err := generate(rt, ot)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*out, src, 0o644); err != nil {
		log.Fatal(err)
	}
	report(rt, probe.RuntimeFields)
	report(ot, probe.OTelFields)
	log.Printf("wrote %s: %d Go versions, %d OTel SDK versions in %s", *out, len(rt), len(ot), time.Since(start).Round(time.Second))
}

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// otelMinor maps "v1.47.0" to "v1.47"; pre-releases and pseudo-versions are
// refused.
func otelMinor(v string) (string, bool) {
	rest, ok := strings.CutPrefix(v, "v")
	if !ok {
		return "", false
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 {
		return "", false
	}
	for _, p := range parts {
		if _, err := strconv.Atoi(p); err != nil || p[0] == '+' || p[0] == '-' {
			return "", false
		}
	}
	return "v" + parts[0] + "." + parts[1], true
}

func measureRuntime(ctx context.Context, dir string, r *result, minor int) error {
	bin, err := probe.BuildRuntime(ctx, dir, r.version, minor)
	if err != nil {
		return err
	}
	b, err := target.Open(bin)
	if err != nil {
		return err
	}
	defer b.Close()
	if b.GoVersion != r.version {
		return fmt.Errorf("probe was built by %s, not %s", b.GoVersion, r.version)
	}
	r.offsets, r.absent, err = probe.Measure(b, probe.RuntimeFields)
	return err
}

func measureOTel(ctx context.Context, dir string, r *result) error {
	bin, err := probe.BuildOTel(ctx, dir, "local", r.version, nil)
	if err != nil {
		return err
	}
	b, err := target.Open(bin)
	if err != nil {
		return err
	}
	defer b.Close()
	for _, m := range []string{probe.OTelSDK, probe.OTelTrace} {
		if got := probe.ModuleVersion(b, m); got != r.version {
			return fmt.Errorf("probe has %s %q, not %s", m, got, r.version)
		}
	}
	r.offsets, r.absent, err = probe.Measure(b, probe.OTelFields)
	return err
}

// keep drops failed results with a warning, and all but the newest patch
// release of each minor.
func keep(rs []*result, what string) []*result {
	byKey := map[string]*result{}
	for _, r := range rs {
		if r.err != nil {
			log.Printf("warning: skipping %s %s: %v", what, r.version, r.err)
			continue
		}
		log.Printf("measured %s %s in %s", what, r.version, r.duration.Round(100*time.Millisecond))
		if old, ok := byKey[r.key]; ok {
			if !sameOffsets(old, r) {
				log.Printf("warning: %s %s and %s differ; keeping the newer", what, old.version, r.version)
			}
			if patch(old.version) > patch(r.version) {
				continue
			}
		}
		byKey[r.key] = r
	}
	var out []*result
	for _, r := range byKey {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return less(out[i].key, out[j].key) })
	return out
}

func sameOffsets(a, b *result) bool {
	if len(a.offsets) != len(b.offsets) {
		return false
	}
	for f, o := range a.offsets {
		if p, ok := b.offsets[f]; !ok || p != o {
			return false
		}
	}
	return true
}

func patch(v string) int {
	i := strings.LastIndex(v, ".")
	n, _ := strconv.Atoi(v[i+1:])
	return n
}

// less orders "go1.9" before "go1.10" and "v1.9" before "v1.10".
func less(a, b string) bool {
	na, _ := strconv.Atoi(a[strings.LastIndex(a, ".")+1:])
	nb, _ := strconv.Atoi(b[strings.LastIndex(b, ".")+1:])
	if na != nb {
		return na < nb
	}
	return a < b
}

// report prints each field's offsets across versions, marking changes.
func report(rs []*result, fields []probe.Field) {
	for _, f := range fields {
		var b strings.Builder
		prev, changed := "", false
		for _, r := range rs {
			v := "-"
			if o, ok := r.offsets[f]; ok {
				v = strconv.FormatUint(o, 10)
			}
			if prev != "" && v != prev {
				changed = true
			}
			prev = v
			fmt.Fprintf(&b, " %s=%s", r.key, v)
		}
		mark := "  "
		if changed {
			mark = "* "
		}
		log.Printf("%s%-60s%s", mark, f, b.String())
	}
}

func generate(rt, ot []*result) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("// Code generated by offsetgen; DO NOT EDIT.\n\n")
	fmt.Fprintf(&b, "// Generated by go run ./internal/layout/offsetgen with the host go command %s.\n\n", hostGo())
	b.WriteString("package layout\n\n")
	writeTable(&b, "runtimeTable", "runtimeMeasured", "Go", rt, probe.RuntimeFields)
	writeTable(&b, "otelTable", "otelMeasured", "OTel SDK", ot, probe.OTelFields)
	return format.Source(b.Bytes())
}

func writeTable(b *bytes.Buffer, table, measured, what string, rs []*result, fields []probe.Field) {
	fmt.Fprintf(b, "// %s holds the field offsets by %s minor version. Fields a version\n// does not have are left out.\n", table, what)
	fmt.Fprintf(b, "var %s = map[string]map[field]uint64{\n", table)
	for _, r := range rs {
		fmt.Fprintf(b, "%q: { // measured with %s\n", r.key, r.version)
		for _, f := range fields {
			if o, ok := r.offsets[f]; ok {
				fmt.Fprintf(b, "{%q, %q}: %d,\n", f.Type, f.Path, o)
			} else {
				fmt.Fprintf(b, "// %s %s: not present\n", f.Type, f.Path)
			}
		}
		b.WriteString("},\n")
	}
	b.WriteString("}\n\n")
	fmt.Fprintf(b, "// %s is the exact %s version measured for each key of %s.\n", measured, what, table)
	fmt.Fprintf(b, "var %s = map[string]string{\n", measured)
	for _, r := range rs {
		fmt.Fprintf(b, "%q: %q,\n", r.key, r.version)
	}
	b.WriteString("}\n\n")
}

func hostGo() string {
	out, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}
