// Package compat prepares the bundled examples for building with old Go
// toolchains, for the compatibility matrix (integration/compat_test.go).
//
// The examples are written for the Go of go.mod. Backport rewrites the few
// newer constructs they use into older Go without moving any line, so that
// the examples' "want:" markers (by line number) still hold:
//
//   - range over an integer (Go 1.22) becomes a three-clause loop;
//   - before Go 1.22 each iteration of a loop shares its variables: a copy
//     (`i := i`) at the top of the body keeps the per-iteration semantics
//     the examples were written for;
//   - sync/atomic's typed values (Go 1.19) come from a stand-in package,
//     AtomicShim, imported under the name atomic.
package compat

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"sort"
	"strings"
)

// AtomicShim is the source of the stand-in for sync/atomic's typed values,
// to be placed at import path ShimPath(module).
const AtomicShim = `// Package atomic stands in for sync/atomic's typed values (Go 1.19) when an
// example is built with an older toolchain.
package atomic

import "sync/atomic"

// Int64 is an atomic int64.
type Int64 struct{ v int64 }

func (c *Int64) Add(d int64) int64 { return atomic.AddInt64(&c.v, d) }
func (c *Int64) Load() int64        { return atomic.LoadInt64(&c.v) }
func (c *Int64) Store(v int64)      { atomic.StoreInt64(&c.v, v) }
`

// ShimPath is the import path of the atomic stand-in inside module.
func ShimPath(module string) string { return module + "/internal/atomic" }

// edit replaces src[pos:end] with text.
type edit struct {
	pos, end int
	text     string
}

// Backport rewrites the Go source of one file for a toolchain of Go minor
// version goMinor (17 for go1.17.13), keeping every line where it is. The
// stand-in for sync/atomic is imported from ShimPath(module).
func Backport(src []byte, goMinor int, module string) ([]byte, error) {
	if goMinor >= 22 {
		return src, nil
	}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "main.go", src, parser.ParseComments)
	if err != nil {
		return nil, fmt.Errorf("backport: %w", err)
	}
	// Types tell an integer range from a channel or slice range. Imports
	// outside the standard library do not resolve; their errors are
	// ignored, as the loops in question do not depend on them.
	info := &types.Info{Types: map[ast.Expr]types.TypeAndValue{}}
	conf := types.Config{Importer: importer.Default(), Error: func(error) {}}
	conf.Check("main", fset, []*ast.File{f}, info)

	off := func(p token.Pos) int { return fset.Position(p).Offset }
	line := func(p token.Pos) int { return fset.Position(p).Line }
	var edits []edit
	var failed error
	ast.Inspect(f, func(n ast.Node) bool {
		switch s := n.(type) {
		case *ast.RangeStmt:
			tv, ok := info.Types[s.X]
			isInt := ok && tv.Type != nil && isInteger(tv.Type)
			if isInt {
				if line(s.For) != line(s.Body.Lbrace) {
					failed = fmt.Errorf("backport: range at line %d spans lines", line(s.For))
					return false
				}
				x := string(src[off(s.X.Pos()):off(s.X.End())])
				v := "_i"
				if id, ok := s.Key.(*ast.Ident); ok && id.Name != "_" {
					v = id.Name
				}
				loop := fmt.Sprintf("for %s := (%s) - (%s); %s < (%s); %s++ {", v, x, x, v, x, v)
				if v != "_i" {
					loop += " " + v + " := " + v
				}
				edits = append(edits, edit{off(s.For), off(s.Body.Lbrace) + 1, loop})
				return true
			}
			if goMinor < 22 {
				edits = append(edits, loopCopies(off(s.Body.Lbrace)+1, s.Key, s.Value)...)
			}
		case *ast.ForStmt:
			if as, ok := s.Init.(*ast.AssignStmt); ok && as.Tok == token.DEFINE {
				edits = append(edits, loopCopies(off(s.Body.Lbrace)+1, as.Lhs...)...)
			}
		case *ast.ImportSpec:
			if s.Path.Value == `"sync/atomic"` && goMinor < 19 {
				edits = append(edits, edit{off(s.Path.Pos()), off(s.Path.End()), fmt.Sprintf("atomic %q", ShimPath(module))})
			}
		}
		return true
	})
	if failed != nil {
		return nil, failed
	}
	sort.Slice(edits, func(i, j int) bool { return edits[i].pos > edits[j].pos })
	out := bytes.Clone(src)
	for _, e := range edits {
		if strings.Contains(e.text, "\n") {
			return nil, fmt.Errorf("backport: edit would add a line")
		}
		out = append(out[:e.pos], append([]byte(e.text), out[e.end:]...)...)
	}
	return out, nil
}

// loopCopies inserts `v := v` for each named loop variable right after the
// body's opening brace at pos.
func loopCopies(pos int, vars ...ast.Expr) []edit {
	var es []edit
	for _, v := range vars {
		if id, ok := v.(*ast.Ident); ok && id.Name != "_" {
			es = append(es, edit{pos, pos, " " + id.Name + " := " + id.Name + ";"})
		}
	}
	return es
}

func isInteger(t types.Type) bool {
	b, ok := t.Underlying().(*types.Basic)
	return ok && b.Info()&types.IsInteger != 0
}
