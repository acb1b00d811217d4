package report

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/jumpmesh/jumpmesh/sim/results"
)

// A path's outcome, which is also its cell's CSS class in the heat map.
const (
	outDirect   = "direct"
	outRelayed  = "relayed"
	outFailed   = "failed"
	outMixed    = "mixed"    // a cell whose runs ended some direct, some relayed
	outEmpty    = "empty"    // a pair the run did not measure
	outJumpoint = "jumpoint" // through a jumpoint: neither direct nor relayed
)

// Colours of the outcomes, shared by the heat map, the dots and the legend.
const (
	colorDirect  = colorOK
	colorRelayed = "#f0a73a"
	colorEmpty   = "#eef1f4"
	inkDark      = "#1f2933"
	inkLight     = "#ffffff"
)

// endpointIndependent are the presets whose NAT maps a socket to one public
// port for every destination: between two of them hole punching should
// always end direct, so their direct rate is the one to watch.
var endpointIndependent = []string{"public", "easy", "cgnat", "udp-blocked"}

func outcome(p results.Path) string {
	final := p.Final
	if final == "" {
		final = p.Initial
	}
	switch {
	case !p.OK:
		return outFailed
	case final == "direct":
		return outDirect
	case final == outJumpoint:
		return outJumpoint
	default:
		return outRelayed
	}
}

// viaJumpoint reports whether the path ended through a jumpoint.
func viaJumpoint(p results.Path) bool { return p.OK && outcome(p) == outJumpoint }

// upgraded reports whether the path started relayed and went direct.
func upgraded(p results.Path) bool {
	return outcome(p) == outDirect && p.Initial == "relayed" && p.TimeToDirectMS > 0
}

func bothEndpointIndependent(p results.Path) bool {
	return slices.Contains(endpointIndependent, p.ConsoleNAT) && slices.Contains(endpointIndependent, p.PeerNAT)
}

func pair(p results.Path) string {
	return fmt.Sprintf("run %d %s (%s) → %s (%s)", p.Run, p.Console, p.ConsoleNAT, p.Peer, p.PeerNAT)
}

// Heat map geometry, in SVG user units.
const (
	hmTitleW = 30.0  // the rotated "console behind"
	hmLabelW = 112.0 // the row labels
	hmTop    = 56.0  // "peer behind" and the column labels
	hmCellW  = 168.0
	hmCellH  = 86.0
	hmGap    = 5.0
	hmRight  = 8.0
)

// heatmap is the NAT grid: a row per console preset, a column per peer
// preset, a cell per pair coloured by how its runs ended.
type heatmap struct {
	Width, Height float64
	Caption       string // the grid's parameters, when results.json has them
	Cols, Rows    []axisLabel
	Cells         []cell
	// Title positions.
	ColTitleX, RowTitleY float64
}

type axisLabel struct {
	X, Y float64
	Name string
}

type cell struct {
	X, Y, W, H  float64
	Class, Fill string // Fill: a colour, or a mixed cell's stripes
	Ink         string // text colour
	Lines       []cellLine
	Tip         string
	// Stripes (a mixed cell): direct and relayed in proportion.
	PatternID          string
	StripeW, StripeAll float64
}

type cellLine struct {
	X, Y       float64
	Text       string
	Class, Ink string
}

// order lists the presets: the grid's own order, then any other preset in
// order of first appearance.
func order(grid *results.Grid, paths []results.Path, nat func(results.Path) string) []string {
	var out []string
	if grid != nil {
		out = append(out, grid.Presets...)
	}
	for _, p := range paths {
		if n := nat(p); !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

func heat(res results.Run) *heatmap {
	rows := order(res.Grid, res.Paths, func(p results.Path) string { return p.ConsoleNAT })
	cols := order(res.Grid, res.Paths, func(p results.Path) string { return p.PeerNAT })
	x0, y0 := hmTitleW+hmLabelW, hmTop
	h := &heatmap{
		Width:  x0 + float64(len(cols))*hmCellW + hmRight,
		Height: y0 + float64(len(rows))*hmCellH,
	}
	h.ColTitleX = x0 + float64(len(cols))*hmCellW/2
	h.RowTitleY = y0 + float64(len(rows))*hmCellH/2
	if g := res.Grid; g != nil {
		h.Caption = fmt.Sprintf("%d × %d presets, %d run%s per pair, %s one-way on each NAT's uplink, up to %s to go direct",
			len(g.Presets), len(g.Presets), g.Runs, plural(g.Runs), fmtDur(msDur(g.LatencyMS)), fmtDur(msDur(g.WaitMS)))
	}
	for j, c := range cols {
		h.Cols = append(h.Cols, axisLabel{X: x0 + (float64(j)+0.5)*hmCellW, Y: y0 - 10, Name: c})
	}
	cells := map[[2]string][]results.Path{}
	for _, p := range res.Paths {
		k := [2]string{p.ConsoleNAT, p.PeerNAT}
		cells[k] = append(cells[k], p)
	}
	for i, r := range rows {
		y := y0 + float64(i)*hmCellH
		h.Rows = append(h.Rows, axisLabel{X: x0 - 10, Y: y + hmCellH/2 + 5, Name: r})
		for j, c := range cols {
			cl := newCell(cells[[2]string{r, c}])
			cl.X, cl.Y = x0+float64(j)*hmCellW, y
			cl.W, cl.H = hmCellW-hmGap, hmCellH-hmGap
			if cl.Class == outMixed {
				cl.PatternID = fmt.Sprintf("hm-mix-%d-%d", i, j)
				cl.Fill = "url(#" + cl.PatternID + ")"
			}
			for k := range cl.Lines {
				cl.Lines[k].X = cl.X + cl.W/2
				cl.Lines[k].Y = cl.Y + 28 + float64(k)*20
				cl.Lines[k].Ink = cl.Ink
			}
			h.Cells = append(h.Cells, cl)
		}
	}
	return h
}

// newCell classifies a pair's runs and writes its text: the outcome, the
// time to direct (or "direct at once") and the direct transports.
func newCell(paths []results.Path) cell {
	if len(paths) == 0 {
		return cell{Class: outEmpty, Fill: colorEmpty, Ink: "#9aa5b1", Lines: []cellLine{{Text: "not run", Class: "sub"}}, Tip: "not measured"}
	}
	n := len(paths)
	var direct, failed, atOnce int
	var ttd []float64
	var transports, tips []string
	for _, p := range paths {
		switch outcome(p) {
		case outDirect:
			direct++
			if p.Transport != "" && !slices.Contains(transports, p.Transport) {
				transports = append(transports, p.Transport)
			}
			if upgraded(p) {
				ttd = append(ttd, p.TimeToDirectMS)
			} else if p.Initial == "direct" {
				atOnce++
			}
		case outFailed:
			failed++
		}
		tips = append(tips, pair(p)+": "+story(p))
	}
	c := cell{Tip: strings.Join(tips, "\n")}
	count := func(word string, k int) string {
		if n == 1 {
			return word
		}
		return fmt.Sprintf("%s %d/%d", word, k, n)
	}
	switch {
	case failed > 0:
		c.Class, c.Fill, c.Ink = outFailed, colorFailed, inkLight
		// The errors are long and alike at their start: the tooltip and
		// the paths table have them.
		c.Lines = append(c.Lines, cellLine{Text: count("failed", failed), Class: "main"}, cellLine{Text: "no connection", Class: "sub"})
	case direct == n:
		c.Class, c.Fill, c.Ink = outDirect, colorDirect, inkLight
		c.Lines = append(c.Lines, cellLine{Text: count("direct", direct), Class: "main"})
	case direct == 0:
		c.Class, c.Fill, c.Ink = outRelayed, colorRelayed, inkDark
		c.Lines = append(c.Lines, cellLine{Text: count("relayed", n), Class: "main"}, cellLine{Text: "never direct", Class: "sub"})
	default:
		c.Class, c.Ink = outMixed, inkDark // Fill: the stripes, once placed
		c.StripeAll = 12
		c.StripeW = c.StripeAll * float64(n-direct) / float64(n)
		c.Lines = append(c.Lines, cellLine{Text: count("direct", direct), Class: "main"})
	}
	if failed == 0 && direct > 0 {
		switch {
		case len(ttd) > 0:
			slices.Sort(ttd)
			c.Lines = append(c.Lines, cellLine{Text: "p50 " + fmtMS(percentile(ttd, 50)) + " to direct", Class: "sub"})
		case atOnce > 0:
			c.Lines = append(c.Lines, cellLine{Text: "direct at once", Class: "sub"})
		}
		if len(transports) > 0 {
			c.Lines = append(c.Lines, cellLine{Text: strings.Join(transports, " + "), Class: "sub"})
		}
	}
	return c
}

// story is one path in words, for tooltips.
func story(p results.Path) string {
	if !p.OK {
		if p.Error == "" {
			return "failed"
		}
		return "failed: " + p.Error
	}
	s := p.Initial
	if p.Final != "" && p.Final != p.Initial {
		s += " → " + p.Final
	}
	if upgraded(p) {
		s += " after " + fmtMS(p.TimeToDirectMS)
	}
	if p.Transport != "" {
		s += " (" + p.Transport + ")"
	}
	return s + ", connected in " + fmtMS(p.ConnectMS)
}

// rate is k of n.
type rate struct{ K, N int }

// Pct is the rate as a whole percentage, or "—" when there is nothing to count.
func (r rate) Pct() string {
	if r.N == 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f%%", math.Round(100*float64(r.K)/float64(r.N)))
}

// summary is the grid in numbers.
type summary struct {
	Connected rate // paths that connected at all
	Direct    rate // ended direct, of all paths
	EIDirect  rate // ended direct, of the endpoint-independent pairs
	AtOnce    rate // the first connection was already direct
	ByRun     []runRate
	// Time to direct of the paths that started relayed and went direct.
	TTD        []float64 // sorted
	P50, P90   float64
	RelayRTT   float64 // p50 of those paths' relay round trips (0: unknown)
	Target     float64 // p50 ≤ 2 × RelayRTT + 30 ms
	Met        bool
	WithinOwn  rate // paths within their own 2 × relay RTT + 30 ms
	ConnectP50 float64
	ConnectP90 float64
}

type runRate struct {
	Run    int
	Direct rate
}

// targetSlackMS is the constant part of the time-to-direct target: a hole
// punch needs about two relayed round trips (CONNECT and SYNC) plus time to
// dial.
const targetSlackMS = 30

func target(relayRTT float64) float64 { return 2*relayRTT + targetSlackMS }

func summarize(paths []results.Path) *summary {
	s := &summary{}
	var relayRTTs, connects []float64
	byRun := map[int]*rate{}
	for _, p := range paths {
		d := outcome(p) == outDirect
		s.Connected.N++
		s.Direct.N++
		if p.OK {
			s.Connected.K++
			connects = append(connects, p.ConnectMS)
			s.AtOnce.N++
			if p.Initial == "direct" {
				s.AtOnce.K++
			}
		}
		if d {
			s.Direct.K++
		}
		if bothEndpointIndependent(p) {
			s.EIDirect.N++
			if d {
				s.EIDirect.K++
			}
		}
		r := byRun[p.Run]
		if r == nil {
			r = &rate{}
			byRun[p.Run] = r
		}
		r.N++
		if d {
			r.K++
		}
		if upgraded(p) {
			s.TTD = append(s.TTD, p.TimeToDirectMS)
			if p.RelayRTTMS > 0 {
				relayRTTs = append(relayRTTs, p.RelayRTTMS)
				s.WithinOwn.N++
				if p.TimeToDirectMS <= target(p.RelayRTTMS) {
					s.WithinOwn.K++
				}
			}
		}
	}
	for run, r := range byRun {
		s.ByRun = append(s.ByRun, runRate{Run: run, Direct: *r})
	}
	slices.SortFunc(s.ByRun, func(a, b runRate) int { return a.Run - b.Run })
	slices.Sort(s.TTD)
	slices.Sort(relayRTTs)
	slices.Sort(connects)
	s.P50, s.P90 = percentile(s.TTD, 50), percentile(s.TTD, 90)
	s.ConnectP50, s.ConnectP90 = percentile(connects, 50), percentile(connects, 90)
	if len(relayRTTs) > 0 {
		s.RelayRTT = percentile(relayRTTs, 50)
		s.Target = target(s.RelayRTT)
		s.Met = len(s.TTD) > 0 && s.P50 <= s.Target
	}
	return s
}

// percentile of sorted values: results.Percentile, which the pair classes
// of results.json use too.
func percentile(sorted []float64, p float64) float64 { return results.Percentile(sorted, p) }

// pathView is a row of the paths table.
type pathView struct {
	results.Path
	Class                    string // the outcome
	Connect, ToDirect, RTT   string
	RTTTip                   string
	InitialClass, FinalClass string
	ShowFinal, EndpointIndep bool
}

func pathRows(paths []results.Path) []pathView {
	var out []pathView
	for _, p := range paths {
		v := pathView{Path: p, Class: outcome(p), Connect: "—", ToDirect: "—", RTT: "—"}
		if p.OK {
			v.Connect = fmtMS(p.ConnectMS)
			v.InitialClass, v.FinalClass = p.Initial, outcome(p)
			v.ShowFinal = p.Final != "" && p.Final != p.Initial
		}
		switch {
		case upgraded(p):
			v.ToDirect = fmtMS(p.TimeToDirectMS)
		case p.OK && p.Initial == "direct":
			v.ToDirect = "at once"
		}
		if p.RTTMS > 0 {
			v.RTT = fmtMS(p.RTTMS)
		}
		if p.RelayRTTMS > 0 {
			v.RTTTip = "through the relay: " + fmtMS(p.RelayRTTMS)
		}
		out = append(out, v)
	}
	return out
}

// fmtMS is a duration in milliseconds, short.
func fmtMS(ms float64) string { return fmtDur(msDur(ms)) }

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
