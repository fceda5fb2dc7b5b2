package compat

import (
	"bytes"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var wantRE = regexp.MustCompile(`// want:\S+ \S+`)

// TestBackportKeepsLines: every example rewritten for Go 1.17 keeps each
// line (and so each want: marker) at its place, parses, and no longer
// uses range over int or sync/atomic's types. That the result builds and
// behaves is shown by the compat matrix (integration/compat_test.go).
func TestBackportKeepsLines(t *testing.T) {
	files, err := filepath.Glob("../../../examples/*/main.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, minor := range []int{17, 19, 21, 22} {
			out, err := Backport(src, minor, "example.com/ctxcompat")
			if err != nil {
				t.Fatalf("%s for 1.%d: %v", f, minor, err)
			}
			a, b := bytes.Split(src, []byte("\n")), bytes.Split(out, []byte("\n"))
			if len(a) != len(b) {
				t.Fatalf("%s for 1.%d: %d lines became %d", f, minor, len(a), len(b))
			}
			for i := range a {
				if w := wantRE.Find(a[i]); w != nil && !bytes.Contains(b[i], w) {
					t.Errorf("%s:%d for 1.%d: marker %q lost: %q", f, i+1, minor, w, b[i])
				}
			}
			if _, err := parser.ParseFile(token.NewFileSet(), f, out, 0); err != nil {
				t.Errorf("%s for 1.%d does not parse: %v", f, minor, err)
			}
			if minor < 19 && strings.Contains(string(out), `"sync/atomic"`) {
				t.Errorf("%s for 1.%d still imports sync/atomic", f, minor)
			}
			if minor < 22 && regexp.MustCompile(`range (traces|requests|n) \{`).Match(out) {
				t.Errorf("%s for 1.%d still ranges over an int", f, minor)
			}
			if minor >= 22 && !bytes.Equal(out, src) {
				t.Errorf("%s for 1.%d changed", f, minor)
			}
		}
	}
}
