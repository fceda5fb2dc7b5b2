// Package layout gives struct field offsets of the Go runtime, package
// context and OpenTelemetry Go for binaries that have no DWARF (built by go
// run or go test, or linked with -ldflags=-s -w). The tables in table.go are
// measured by offsetgen from the DWARF of probe programs built with each Go
// toolchain and OTel SDK version; regenerate them with
//
//	go run ./internal/layout/offsetgen -out internal/layout/table.go
//
// The offsets are those of linux/amd64, the only target ctxwatch attaches
// to (arm64 binaries are inspected, not attached).
// The runtime table is keyed by Go minor version and the OTel table by OTel
// SDK minor version; table.go names the exact release each was measured
// with. Field names are spelled as for (*target.Binary).FieldOffset. A
// version not in the tables gives no answer: offsets are never guessed.
package layout

import (
	"sort"
	"strconv"
	"strings"
)

// Not a go:generate step: it downloads every toolchain (make layouts).

// field is a key of the tables: a type name and a dotted field path.
type field struct {
	typ, path string
}

// Runtime returns the offset of a field of the Go runtime or package context for a Go version (e.g. "go1.26.8", from build info).
//
// Only release versions are known ("go1.N.M", or "go1.N" before Go 1.21);
// release candidates, development versions and builds with GOEXPERIMENT
// settings (" X:..." in the version) are not.
func Runtime(goVersion, typeName, fieldPath string) (uint64, bool) {
	key, ok := goMinor(goVersion)
	if !ok {
		return 0, false
	}
	off, ok := runtimeTable[key][field{typeName, fieldPath}]
	return off, ok
}

// OTel returns the offset of an OTel type's field for the OTel SDK module version (e.g. "v1.47.0").
//
// Pre-release and pseudo-versions are not known.
func OTel(sdkVersion, typeName, fieldPath string) (uint64, bool) {
	key, ok := otelMinor(sdkVersion)
	if !ok {
		return 0, false
	}
	off, ok := otelTable[key][field{typeName, fieldPath}]
	return off, ok
}

// Versions lists the Go minor versions in the table.
func Versions() []string { return keys(runtimeTable) }

// OTelVersions lists the OTel SDK minor versions in the table.
func OTelVersions() []string { return keys(otelTable) }

func keys(m map[string]map[field]uint64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := minorOf(out[i]), minorOf(out[j])
		if a != b {
			return a < b
		}
		return out[i] < out[j]
	})
	return out
}

func minorOf(key string) int {
	n, _ := strconv.Atoi(key[strings.LastIndex(key, ".")+1:])
	return n
}

// goMinor maps "go1.26.8" to "go1.26".
func goMinor(v string) (string, bool) {
	rest, ok := strings.CutPrefix(v, "go1.")
	if !ok {
		return "", false
	}
	parts := strings.Split(rest, ".")
	if len(parts) > 2 || !allDigits(parts) {
		return "", false
	}
	if len(parts) == 1 {
		// From Go 1.21 on the first release is go1.N.0; "go1.N" is only a
		// language version.
		if n, _ := strconv.Atoi(parts[0]); n >= 21 {
			return "", false
		}
	}
	return "go1." + parts[0], true
}

// otelMinor maps "v1.47.0" to "v1.47".
func otelMinor(v string) (string, bool) {
	rest, ok := strings.CutPrefix(v, "v")
	if !ok {
		return "", false
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 || !allDigits(parts) {
		return "", false
	}
	return "v" + parts[0] + "." + parts[1], true
}

func allDigits(parts []string) bool {
	for _, p := range parts {
		if p == "" || len(p) > 1 && p[0] == '0' {
			return false
		}
		for _, c := range p {
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	return true
}
