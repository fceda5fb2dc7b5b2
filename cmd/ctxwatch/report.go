package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"strings"

	"github.com/ctxwatch/ctxwatch/internal/report"
)

const reportUsage = `ctxwatch report makes the HTML report page of a saved JSON lines report
(ctxwatch --format json --output FILE), as --html does during a watch. It
needs no privileges.

Usage:
  ctxwatch report --html OUT [--source DIR] [--trace-url URL] FILE

FILE is - for standard input.

Flags:
`

// reportConfig is what ctxwatch report is asked to do.
type reportConfig struct {
	html  string
	input string
	page  report.HTMLOptions
}

func parseReportFlags(args []string, stderr io.Writer) (reportConfig, error) {
	var c reportConfig
	fs := flag.NewFlagSet("ctxwatch report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, reportUsage)
		fs.PrintDefaults()
		fmt.Fprint(stderr, `
Exit status: 0 when the page is written; 2 for a usage error or a FILE that
is not a JSON lines report; 1 when the page cannot be written.
`)
	}
	fs.StringVar(&c.html, "html", "", "write the page to `FILE`")
	addPageFlags(fs, &c.page)
	if err := parseQuiet(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, fmt.Errorf("%w: %v", errUsage, err)
	}
	switch {
	case c.html == "":
		return c, fmt.Errorf("%w: give --html FILE", errUsage)
	case fs.NArg() != 1:
		return c, fmt.Errorf("%w: give one JSON lines report to read (- for standard input), got %d", errUsage, fs.NArg())
	}
	c.input = fs.Arg(0)
	return c, checkPageFlags(c.page)
}

// runReport is ctxwatch report: it returns the exit status.
func runReport(args []string, stderr io.Writer, logger *log.Logger) int {
	c, err := parseReportFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		logger.Print(strings.TrimPrefix(err.Error(), "usage: "))
		logger.Print("run ctxwatch report --help for usage")
		return 2
	}
	lines, err := readReport(c.input)
	if err != nil {
		logger.Print(err)
		return 2
	}
	page := report.NewHTML(c.page)
	for _, l := range lines {
		page.Add(l)
	}
	f, err := os.Create(c.html)
	if err != nil {
		logger.Printf("open HTML report file: %v", err)
		return 1
	}
	defer f.Close()
	if err := writePage(page, f); err != nil {
		logger.Print(err)
		return 1
	}
	return 0
}

// readReport reads the JSON lines report at path, - for standard input.
func readReport(path string) ([]report.Line, error) {
	if path == "-" {
		return report.ReadJSON(os.Stdin)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	lines, err := report.ReadJSON(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return lines, nil
}

// writePage writes page to f and closes it: a page cut short by a full
// disk must be an error, not a page that looks complete.
func writePage(page *report.HTML, f *os.File) error {
	w := bufio.NewWriter(f)
	err := page.Write(w)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("HTML report %s: %w", f.Name(), err)
	}
	return nil
}
