package uprobe

import (
	"errors"
	"fmt"

	"github.com/ctxwatch/ctxwatch/internal/layout"
	"github.com/ctxwatch/ctxwatch/internal/target"
)

// assumption is a layout bpf/goabi.h relies on without being told: the
// offset of a field in a runtime type, under the names the type has had.
type assumption struct {
	types []string // the type's names, newest first
	field string
	want  uint64
}

// runtimeAssumptions are the layouts the probes assume (bpf/goabi.h),
// checked from go1.17.13 to go1.27.4.
var runtimeAssumptions = []assumption{
	// A context of package context starts with its parent (the walk).
	{[]string{"context.valueCtx"}, "Context", 0},
	{[]string{"context.cancelCtx"}, "Context", 0},
	{[]string{"context.timerCtx"}, "cancelCtx", 0},
	// valueCtx is {Context, key, val any}: two words each.
	{[]string{"context.valueCtx"}, "key", 16},
	{[]string{"context.valueCtx"}, "val", 32},
	// An itab's concrete type is its second word (internal/abi.ITab from
	// Go 1.23, runtime.itab before: the layout table's measurements).
	{[]string{"internal/abi.ITab", "runtime.itab"}, "Type", 8},
	// A func value points at its code pointer.
	{[]string{"runtime.funcval"}, "fn", 0},
	// A channel's element count is its first word, and a waiting
	// goroutine's sudog starts with its g (chan.h; the other hchan and
	// sudog fields moved across releases and come from the layout table).
	{[]string{"runtime.hchan"}, "qcount", 0},
	{[]string{"runtime.sudog"}, "g", 0},
	// A string is {ptr, len}.
	{[]string{"string"}, "len", 8},
}

// checkAssumptions checks what the probes assume of the Go runtime's
// layout: a Go release that changed one is refused, not watched wrong. For
// a release the layout table knows, against the table (measured from that
// release's DWARF, and compared with the assumptions by
// TestAssumptionsInTable): no DWARF is read, which takes seconds in a
// large binary. For another release, against the binary's DWARF when it
// has DWARF. It returns how many it checked (none without DWARF, or for
// types the binary does not have).
func checkAssumptions(bin *target.Binary, as []assumption) (int, error) {
	if _, known := layout.Runtime(bin.GoVersion, "runtime.g", "goid"); known {
		return checkAgainst(bin.GoVersion, as, func(typ, field string) (uint64, error) {
			if off, ok := layout.Runtime(bin.GoVersion, typ, field); ok {
				return off, nil
			}
			return 0, target.ErrNoSymbol // not under this name in this release
		})
	}
	return checkAgainst(bin.GoVersion, as, bin.FieldOffset)
}

// checkAgainst compares each assumption with the offset fieldOffset gives.
func checkAgainst(goVersion string, as []assumption, fieldOffset func(typ, field string) (uint64, error)) (int, error) {
	checked := 0
	for _, a := range as {
		for _, typ := range a.types {
			field := a.field
			if typ == "runtime.itab" {
				field = "_type"
			}
			off, err := fieldOffset(typ, field)
			if errors.Is(err, target.ErrNoLayout) {
				return checked, nil // no DWARF: the compat matrix vouches
			}
			if err != nil {
				continue // not under this name, or not linked
			}
			if off != a.want {
				return checked, fmt.Errorf("%s.%s is at offset %d in this binary (Go %s), the probes assume %d: %w",
					typ, field, off, goVersion, a.want, ErrUnsupported)
			}
			checked++
			break
		}
	}
	return checked, nil
}
