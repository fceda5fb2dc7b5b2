package main

import (
	"errors"
	"flag"
	"io"
)

// parseQuiet parses args with fs. The flag package prints a parse error
// with the whole usage after it; run prints the error in one line with a
// hint instead, so the usage is shown only for -help.
func parseQuiet(fs *flag.FlagSet, args []string) error {
	usage, out := fs.Usage, fs.Output()
	fs.Usage = func() {}
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.Usage = usage
	fs.SetOutput(out)
	if errors.Is(err, flag.ErrHelp) {
		usage()
	}
	return err
}
