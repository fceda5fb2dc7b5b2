package report

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ctxwatch/ctxwatch/internal/analysis"
	"github.com/ctxwatch/ctxwatch/internal/findings"
)

// The trace flow graph is laid out in three columns: the function that
// had the trace, the spawn sites (one row each, in the summary's order:
// most breaks first), and the break sites. Row heights and column widths
// are fixed, so fifty sites make a graph about 1700 pixels tall, 1100
// wide, whose labels never shrink.
const (
	flowRowH   = 32
	flowNodeH  = 22
	flowTop    = 30 // room for the column headings
	flowOwnerX = 4
	flowOwnerW = 220
	flowSiteX  = 360
	flowSiteW  = 310
	flowBreakX = 800
	flowBreakW = 290
	flowWidth  = flowBreakX + flowBreakW + 4
	flowCharW  = 6.7 // of the 11px monospace font, for truncating labels
)

type flowGraph struct {
	Width, Height int
	Headings      []flowText
	Nodes         []flowNode
	Edges         []flowEdge
}

type flowText struct {
	X, Y int
	Text string
}

type flowNode struct {
	Class      string // owner, site or breaksite; "broken" added
	X, Y, W, H int
	TX, TY     int
	Label      string // truncated to fit
	Title      string // in full
	Site       string // data-site: FILE:LINE, for site and break-site nodes
	Func       string // data-func, for owner nodes
}

type flowEdge struct {
	Broken   bool
	D        string // the path
	Arrow    string // the arrowhead's points
	LX, LY   int
	Anchor   string // of the label: end (near the node) or middle
	Label    string
	Title    string
	From, To string // the nodes' data-site or data-func
}

// flowBuilder places the nodes of one process's graph.
type flowBuilder struct {
	g          flowGraph
	owners     map[string]int // function → row
	ownerTaken map[int]bool   // rows of the owner column in use
	breakRows  map[analysis.Frame]int
	breakTaken map[int]bool // rows of the break column in use
	rows       int
}

// buildFlow draws who had the trace, where goroutines were started in
// it, and where it broke: an edge from the owning function to each spawn
// site labelled traced/kept/lost, and one from a spawn site (or, for
// breaks of no spawned goroutine, from the owning function) to each
// break site. Broken edges are drawn dashed and red.
func buildFlow(s *findings.Summary) flowGraph {
	b := &flowBuilder{
		owners: map[string]int{}, ownerTaken: map[int]bool{},
		breakRows: map[analysis.Frame]int{}, breakTaken: map[int]bool{},
	}
	b.rows = len(s.SpawnSites)
	b.g.Headings = []flowText{
		{flowOwnerX, 16, "had the trace"},
		{flowSiteX, 16, "spawn site (go statement)"},
		{flowBreakX, 16, "break site"},
	}
	siteRow := map[analysis.Frame]int{}
	for i, site := range s.SpawnSites {
		siteRow[site.Site] = i
	}
	owners := spawnOwners(s.Breaks, siteRow, s.SpawnSites)
	for i, site := range s.SpawnSites {
		owner, ok := owners[site.Site.Function]
		if !ok {
			owner = site.Site.Function
		}
		b.spawnSite(i, site, owner)
	}
	for _, br := range s.Breaks {
		if i, ok := spawnSiteOf(br.Spawn, siteRow); ok {
			b.spawnBreak(i, s.SpawnSites[i].Site, br)
		}
	}
	for _, br := range s.Breaks {
		if _, ok := spawnSiteOf(br.Spawn, siteRow); !ok {
			b.checkBreak(br)
		}
	}
	b.g.Width = flowWidth
	b.g.Height = flowTop + max(b.rows, 1)*flowRowH + 8
	return b.g
}

func rowY(row int) int { return flowTop + row*flowRowH }

// spawnSite draws spawn site i, its owner and the edge between them.
func (b *flowBuilder) spawnSite(i int, site analysis.SpawnSite, owner string) {
	broken := site.Lost+site.NewRoot > 0
	b.g.Nodes = append(b.g.Nodes, siteNode("site", flowSiteX, flowSiteW, i, site.Site, broken))
	row := b.owner(owner, i)
	lost := site.Lost + site.NewRoot
	b.g.Edges = append(b.g.Edges, flowEdge{
		Broken: broken,
		Label:  fmt.Sprintf("%d/%d/%d", site.TracedSpawns, site.Propagated, lost),
		Title: fmt.Sprintf("%d traced, %d kept, %d lost-at-spawn, %d new-root, %d not judged",
			site.TracedSpawns, site.Propagated, site.Lost, site.NewRoot, site.NeverJudged),
		From: Printable(owner), To: frameKey(site.Site),
		Anchor: "end", LX: flowSiteX - 10, LY: rowY(i) + flowNodeH/2 - 5,
	}.path(flowOwnerX+flowOwnerW, rowY(row)+flowNodeH/2, flowSiteX, rowY(i)+flowNodeH/2))
}

// spawnBreak draws the edge from spawn site i to the site of a break of
// the goroutines started there.
func (b *flowBuilder) spawnBreak(i int, from analysis.Frame, br analysis.BreakCount) {
	row := b.breakSite(br.Site, i)
	b.g.Edges = append(b.g.Edges, breakEdge(br, frameKey(from)).path(
		flowSiteX+flowSiteW, rowY(i)+flowNodeH/2, flowBreakX, rowY(row)+flowNodeH/2))
}

// checkBreak draws a break of no spawned goroutine (dropped, overwritten)
// in a row of its own below the spawn sites, from the function of the
// check that owned the trace.
func (b *flowBuilder) checkBreak(br analysis.BreakCount) {
	row := b.breakSite(br.Site, b.rows)
	owner := checkOwner(br.Site, br.Stack)
	orow := b.owner(owner, row)
	e := breakEdge(br, Printable(owner))
	e.Anchor, e.LX, e.LY = "end", flowBreakX-10, rowY(row)+flowNodeH/2-5
	b.g.Edges = append(b.g.Edges, e.gutter(
		flowOwnerX+flowOwnerW, rowY(orow)+flowNodeH/2, flowBreakX, rowY(row)+flowNodeH/2))
}

func breakEdge(br analysis.BreakCount, from string) flowEdge {
	return flowEdge{
		Broken: true,
		Label:  fmt.Sprintf("%s ×%d", br.Kind, br.Count),
		Title:  fmt.Sprintf("%d× %s at %s", br.Count, br.Kind, frameLabel(br.Site)),
		From:   from, To: frameKey(br.Site),
		Anchor: "middle",
	}
}

// path sets the edge's curve from (x1, y1) to (x2, y2), its arrowhead,
// and, for a label in the middle, the label's place.
func (e flowEdge) path(x1, y1, x2, y2 int) flowEdge {
	mx := (x1 + x2) / 2
	e.D = fmt.Sprintf("M%d %d C%d %d %d %d %d %d", x1, y1, mx, y1, mx, y2, x2, y2)
	e.Arrow = fmt.Sprintf("%d,%d %d,%d %d,%d", x2-7, y2-4, x2, y2, x2-7, y2+4)
	if e.Anchor == "middle" {
		e.LX, e.LY = mx, (y1+y2)/2-4
	}
	return e
}

// gutter sets the edge's path from (x1, y1) to (x2, y2) down the gutter
// right of the owner column, then along row y2, which is free in the
// spawn-site column: a curve across would pass behind spawn-site nodes.
func (e flowEdge) gutter(x1, y1, x2, y2 int) flowEdge {
	const r = 8 // corner radius
	gx := x1 + 16
	switch {
	case y1 == y2:
		e.D = fmt.Sprintf("M%d %d H%d", x1, y1, x2)
	default:
		dy := r
		if y2 < y1 {
			dy = -r
		}
		e.D = fmt.Sprintf("M%d %d H%d Q%d %d %d %d V%d Q%d %d %d %d H%d",
			x1, y1, gx-r, gx, y1, gx, y1+dy, y2-dy, gx, y2, gx+r, y2, x2)
	}
	e.Arrow = fmt.Sprintf("%d,%d %d,%d %d,%d", x2-7, y2-4, x2, y2, x2-7, y2+4)
	return e
}

// owner returns the row of the owner node of function fn, placing it in
// the first free row from row on if it is new.
func (b *flowBuilder) owner(fn string, row int) int {
	if r, ok := b.owners[fn]; ok {
		return r
	}
	row = freeRow(b.ownerTaken, row)
	b.owners[fn] = row
	b.rows = max(b.rows, row+1)
	label := Printable(fn)
	b.g.Nodes = append(b.g.Nodes, flowNode{
		Class: "owner", X: flowOwnerX, Y: rowY(row), W: flowOwnerW, H: flowNodeH,
		TX: flowOwnerX + 6, TY: rowY(row) + 15,
		Label: truncLeft(label, flowOwnerW), Title: label, Func: label,
	})
	return row
}

// breakSite returns the row of the node of break site f, placing it in
// the first free row from row on if it is new.
func (b *flowBuilder) breakSite(f analysis.Frame, row int) int {
	if r, ok := b.breakRows[f]; ok {
		return r
	}
	row = freeRow(b.breakTaken, row)
	b.breakRows[f] = row
	b.rows = max(b.rows, row+1)
	b.g.Nodes = append(b.g.Nodes, siteNode("breaksite", flowBreakX, flowBreakW, row, f, true))
	return row
}

// freeRow takes the first row from row on that taken does not hold.
func freeRow(taken map[int]bool, row int) int {
	for taken[row] {
		row++
	}
	taken[row] = true
	return row
}

func siteNode(class string, x, w, row int, f analysis.Frame, broken bool) flowNode {
	if broken {
		class += " broken"
	}
	label := frameLabel(f)
	return flowNode{
		Class: class, X: x, Y: rowY(row), W: w, H: flowNodeH, TX: x + 6, TY: rowY(row) + 15,
		Label: truncLeft(label, w), Title: frameTitle(f),
		Site: frameKey(f),
	}
}

// truncLeft shortens s to fit a node w pixels wide, keeping its end: the
// function's own name and the line.
func truncLeft(s string, w int) string {
	n := int(float64(w-12) / flowCharW)
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return "…" + string(r[len(r)-n+1:])
}

// spawnSiteOf returns the row of the spawn site in a break's spawn stack:
// the analysis made its innermost user frame the site.
func spawnSiteOf(spawn []analysis.Frame, rows map[analysis.Frame]int) (int, bool) {
	for _, f := range spawn {
		if i, ok := rows[f]; ok {
			return i, true
		}
	}
	return 0, false
}

// spawnOwners names, by the function of a spawn site, the function that
// had the trace when goroutines were started there: the outermost frame
// of your code in a spawn stack above the site (the handler, say, that
// called a helper with a go statement). Only breaks carry a spawn stack:
// what one shows of a function holds for every site in it, so that sites
// of one function, broken or not, hang from one owner. A function no
// spawn stack shows owns its own sites.
func spawnOwners(breaks []analysis.BreakCount, rows map[analysis.Frame]int, sites []analysis.SpawnSite) map[string]string {
	owners := map[string]string{}
	for _, br := range breaks {
		i, ok := spawnSiteOf(br.Spawn, rows)
		if !ok {
			continue
		}
		site := sites[i].Site
		if _, done := owners[site.Function]; done {
			continue
		}
		owners[site.Function] = outermostUser(site, br.Spawn[slices.Index(br.Spawn, site)+1:])
	}
	return owners
}

// checkOwner is spawnOwner for a check's stack (dropped, overwritten):
// the stack holds only frames of your code, innermost first.
func checkOwner(site analysis.Frame, stack []analysis.Frame) string {
	return outermostUser(site, stack)
}

func outermostUser(site analysis.Frame, frames []analysis.Frame) string {
	for j := len(frames) - 1; j >= 0; j-- {
		if f := frames[j]; f.Function != site.Function && userLike(f) {
			return f.Function
		}
	}
	return site.Function
}

// userLike guesses whether f is your code, which the JSON report does not
// say: frames of the standard library (a package path whose first element
// has no dot, other than main) and of modules from the module cache or a
// vendor directory (a file name with @version or /vendor/) are not.
func userLike(f analysis.Frame) bool {
	pkg := funcPackage(f.Function)
	first, _, _ := strings.Cut(pkg, "/")
	if pkg != "main" && !strings.Contains(first, ".") {
		return false
	}
	file := filepath.ToSlash(f.File)
	return !strings.Contains(file, "@v") && !strings.Contains(file, "/vendor/")
}

// funcPackage returns the package path of a function name as the runtime
// spells it: github.com/a/b.(*T).M is of github.com/a/b.
func funcPackage(fn string) string {
	slash := strings.LastIndexByte(fn, '/')
	if dot := strings.IndexByte(fn[slash+1:], '.'); dot >= 0 {
		return fn[:slash+1+dot]
	}
	return fn
}
