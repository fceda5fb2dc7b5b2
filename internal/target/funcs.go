package target

import (
	"debug/elf"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unsafe"
)

// Func is a function's name and its [Entry, End) virtual address range.
type Func struct {
	Name       string
	Entry, End uint64 // virtual addresses, End exclusive
}

// Range is a half-open [Start, End) virtual address range.
type Range struct{ Start, End uint64 }

// Func finds a function by its full symbol name, e.g. "context.WithValue" or
// "go.opentelemetry.io/otel/sdk/trace.(*recordingSpan).End", in the
// .gopclntab function table (so it works for stripped binaries). End is
// where the next function starts (see Funcs). A function that was inlined
// everywhere has no entry; Func then returns an error wrapping ErrNoSymbol.
//
// A linear search: ctxwatch looks up a few dozen names once per binary,
// cheaper than indexing the hundreds of thousands a large binary has.
func (b *Binary) Func(name string) (Func, error) {
	for _, f := range b.funcs {
		if b.table.NameIs(f, name) { // compared in place, not copied
			return Func{Name: name, Entry: f.Entry, End: f.End}, nil
		}
	}
	return Func{}, fmt.Errorf("find function %s in %s: %w", name, b.Path, ErrNoSymbol)
}

// ErrInlined means a function has no entry of its own because the compiler
// inlined every call of it.
var ErrInlined = errors.New("inlined everywhere")

// MissingFunc explains why Func found no function name: the functions it
// was inlined into, from the pclntab's inline trees (an error wrapping
// ErrInlined), or that the binary has no such function (ErrNoSymbol).
// The error does not repeat name: callers say what they looked it up for.
// It scans every inline tree: for error paths, not for lookups.
func (b *Binary) MissingFunc(name string) error {
	const shown = 3
	into, err := b.table.InlinedInto(name, shown+1)
	if err == nil && len(into) > 0 {
		more := ""
		if len(into) > shown {
			into, more = into[:shown], " and more"
		}
		return fmt.Errorf("%w by the compiler (into %s%s), so it has no function of its own to probe; mark it //go:noinline",
			ErrInlined, strings.Join(into, ", "), more)
	}
	return fmt.Errorf("%w: no such function in this binary (unused, or misspelt)", ErrNoSymbol)
}

// Funcs returns all functions of the .gopclntab function table (so it works
// for stripped binaries), sorted by Entry. The caller may modify the slice.
// The pclntab records no sizes: End is where the next function starts, so
// it includes alignment padding (INT3 bytes), unlike Func's .symtab sizes.
func (b *Binary) Funcs() []Func {
	out := make([]Func, len(b.funcs))
	for i, f := range b.funcs {
		out[i] = Func{Name: b.table.Name(f), Entry: f.Entry, End: f.End}
	}
	return out
}

// FileOffset converts a virtual address inside an executable PT_LOAD segment
// to the file offset a uprobe is attached at. It works for PIE and non-PIE
// binaries alike since both are given link-time addresses.
func (b *Binary) FileOffset(addr uint64) (uint64, error) {
	for _, p := range b.elf.Progs {
		if p.Type != elf.PT_LOAD || p.Flags&elf.PF_X == 0 {
			continue
		}
		if addr >= p.Vaddr && addr-p.Vaddr < p.Filesz {
			return p.Off + (addr - p.Vaddr), nil
		}
	}
	return 0, fmt.Errorf("file offset of %#x in %s: not in an executable PT_LOAD segment", addr, b.Path)
}

// TextRanges returns the [Start,End) ranges of the functions whose name
// satisfies keep, sorted by Start. Functions that are neighbours in address
// order (no rejected function between them) are merged into one range, so
// the alignment padding between them is covered too.
//
// keep gets each name as a view of the binary's mapped pclntab, not a copy
// (a large binary has hundreds of thousands): it must not keep the string.
func (b *Binary) TextRanges(keep func(funcName string) bool) []Range {
	var out []Range
	prevKept := false
	for _, f := range b.funcs {
		name := b.table.NameBytes(f)
		if len(name) == 0 || !keep(unsafe.String(&name[0], len(name))) {
			prevKept = false
			continue
		}
		if prevKept && len(out) > 0 && f.Entry >= out[len(out)-1].Start {
			if f.End > out[len(out)-1].End {
				out[len(out)-1].End = f.End
			}
		} else {
			out = append(out, Range{f.Entry, f.End})
		}
		prevKept = true
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	return out
}

// IsUserFunc reports whether the function symbol name belongs to user code:
// package main (including closures such as "main.main.func1" and methods such
// as "main.(*T).M"), or a package whose import path is mainModule or one of
// extra, or lies below one of them. Prefixes match at path-element
// boundaries: "github.com/a/b" matches "github.com/a/b.F" and
// "github.com/a/b/c.(*T).M" but not "github.com/a/bc.F".
//
// The linker escapes dots in the last element of a package path, so the
// binary names "gopkg.in/yaml.v3".Unmarshal "gopkg.in/yaml%2ev3.Unmarshal";
// both spellings match the prefix "gopkg.in/yaml.v3".
func IsUserFunc(name, mainModule string, extra []string) bool {
	// Most names of a large binary are not user code: rejected by a
	// compare of their first bytes before their package path is found.
	if !strings.HasPrefix(name, "main.") && !mayMatch(name, mainModule) && !slices.ContainsFunc(extra, func(p string) bool { return mayMatch(name, p) }) {
		return false
	}
	pkg := PackagePath(name)
	if pkg == "main" {
		return true
	}
	// Without building prefix+"/" and prefix+".": this runs for every
	// function of the binary at each attach (100,000 in a large service).
	below := func(s, prefix string, sep byte) bool {
		return len(s) > len(prefix) && s[len(prefix)] == sep && s[:len(prefix)] == prefix
	}
	match := func(prefix string) bool {
		prefix = strings.TrimSuffix(prefix, "/")
		return prefix != "" && (pkg == prefix || below(pkg, prefix, '/') || below(name, prefix, '.'))
	}
	if match(mainModule) {
		return true
	}
	for _, p := range extra {
		if match(p) {
			return true
		}
	}
	return false
}

// mayMatch is false when name cannot belong to a package at or below
// prefix: it does not start with the part of prefix that the linker
// writes as it is, up to its last '/' (cmd/link escapes dots in a
// package path's last element alone, and the other bytes it escapes are
// not in module paths), or up to its first '.' when it has no '/'.
func mayMatch(name, prefix string) bool {
	prefix = strings.TrimSuffix(prefix, "/")
	if prefix == "" {
		return false
	}
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		prefix = prefix[:i+1]
	} else if i := strings.IndexByte(prefix, '.'); i >= 0 {
		prefix = prefix[:i]
	}
	return strings.HasPrefix(name, prefix)
}

// PackagePath returns the import path part of a Go function symbol name:
// everything before the first '.' after the last '/', with the linker's
// %xx escapes (e.g. "%2e" for '.' in the last element) decoded. Type
// arguments in brackets ("pkg.F[example.com/x.T]") are ignored when looking
// for the '/'. It returns "" when name has no package qualifier.
func PackagePath(name string) string {
	head := name
	if i := strings.IndexByte(head, '['); i >= 0 {
		head = head[:i]
	}
	slash := strings.LastIndexByte(head, '/')
	dot := strings.IndexByte(head[slash+1:], '.')
	if dot < 0 {
		return ""
	}
	return unescapePath(head[:slash+1+dot])
}

// unescapePath decodes the %xx escapes cmd/link uses in symbol names.
func unescapePath(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				sb.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		sb.WriteByte(s[i])
	}
	return sb.String()
}
