package uprobe

import (
	"errors"
	"fmt"

	"github.com/ctxwatch/ctxwatch/internal/target"
)

// errUnverified means a plan's points cannot be checked: it was not made
// by NewPlan, which keeps the binary they are checked against.
var errUnverified = errors.New("plan not made by NewPlan")

// verify checks every point against the decoded code of the function it
// names, which must contain it, before anything is attached. A uprobe in
// the middle of an instruction would overwrite it with a breakpoint and
// the target would execute garbage: such a plan is refused, with an error
// wrapping target.ErrNotInstruction.
func (p *Plan) verify() error {
	if p.bin == nil {
		return fmt.Errorf("verify probe points: %w", errUnverified)
	}
	funcs := map[string]target.Func{}
	for _, pt := range p.Points {
		fn, ok := funcs[pt.Func]
		if pt.fn.End != 0 {
			fn, ok = pt.fn, true // found by address (a select's result probe)
		}
		if !ok {
			var err error
			if fn, err = p.bin.Func(pt.Func); err != nil {
				return fmt.Errorf("verify %s probe at %#x: %w", pt.Program, pt.Address, err)
			}
			funcs[pt.Func] = fn
		}
		if err := p.bin.CheckInstruction(fn, pt.Address); err != nil {
			return fmt.Errorf("refuse %s probe: %w", pt.Program, err)
		}
	}
	return nil
}
