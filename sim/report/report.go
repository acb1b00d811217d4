package report

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jumpmesh/jumpmesh/sim/results"
)

// File is the report's file name, written beside results.json.
const File = "report.html"

// FromResultsFile reads a results.json and writes report.html beside it.
func FromResultsFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var res results.Run
	if err := json.Unmarshal(b, &res); err != nil {
		return fmt.Errorf("report: %s: %w", path, err)
	}
	return Write(filepath.Dir(path), res)
}

// Write renders res into dir/report.html.
func Write(dir string, res results.Run) error {
	var buf bytes.Buffer
	if err := Render(&buf, res); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, File), buf.Bytes(), 0o644)
}

// Render writes the report's HTML to w.
func Render(w io.Writer, res results.Run) error {
	return page().ExecuteTemplate(w, "page", build(res))
}

//go:embed *.html.tmpl
var templates embed.FS

// page is the parsed templates, parsed at the first report: parsing them
// took 1.2 ms of every jumpmesh process's start when it was a package
// variable (GODEBUG=inittrace=1), and only sim renders reports (issue 17).
var page = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("page").Funcs(template.FuncMap{
		"dur": fmtDur,
		"ms":  fmtMS,
		"nat": natText,
	}).ParseFS(templates, "*.html.tmpl"))
})

// Colours of a step's state, shared by the timeline and the table.
const (
	colorOK      = "#2f9e5b"
	colorFailed  = "#d64545"
	colorSkipped = "#a3abb5"
)

// model is what the template renders: one field per section.
type model struct {
	Title    string
	Res      results.Run
	State    string // "passed" | "failed"
	Date     string
	Total    time.Duration
	Counts   counts
	Topology []netView
	Timeline *timeline
	Steps    []stepView
	// Set only when the results have paths.
	Heat    *heatmap
	Summary *summary
	Classes *classTable // a grid's pair classes
	Dists   []*dist
	Paths   []pathView
	// Set only when the results have wakes.
	Wakes []wakeView
}

type counts struct{ OK, Failed, Skipped int }

type stepView struct {
	results.Step
	State  string // ok | failed | skipped
	Color  string
	Offset time.Duration
	Dur    time.Duration
	Lines  int
}

type netView struct {
	Name, NAT, Subnet, Public string
	Hosts                     []results.Host
}

func build(res results.Run) model {
	m := model{Res: res, State: "passed", Total: msDur(res.DurationMS)}
	if !res.OK {
		m.State = "failed"
	}
	m.Title = fmt.Sprintf("%s — %s", res.Scenario, m.State)
	if !res.Started.IsZero() {
		m.Date = res.Started.UTC().Format("2006-01-02 15:04:05 MST")
	}
	for _, s := range res.Steps {
		v := stepView{Step: s, Dur: msDur(s.DurationMS)}
		if !res.Started.IsZero() && !s.Start.IsZero() {
			v.Offset = s.Start.Sub(res.Started)
		}
		switch {
		case s.Skipped:
			v.State, v.Color = "skipped", colorSkipped
			m.Counts.Skipped++
		case s.OK:
			v.State, v.Color = "ok", colorOK
			m.Counts.OK++
		default:
			v.State, v.Color = "failed", colorFailed
			m.Counts.Failed++
		}
		if s.Output != "" {
			v.Lines = strings.Count(s.Output, "\n") + 1
		}
		m.Steps = append(m.Steps, v)
	}
	m.Topology = topology(res)
	if len(m.Steps) > 0 {
		m.Timeline = layout(m.Steps, m.Total)
	}
	// The NAT traversal sections are about paths that may go direct: a
	// path through a jumpoint is listed with the others, not counted.
	nat := res
	nat.Paths = slices.DeleteFunc(slices.Clone(res.Paths), viaJumpoint)
	if len(nat.Paths) > 0 {
		m.Heat = heat(nat)
		m.Summary = summarize(nat.Paths)
		m.Dists = distributions(nat.Paths, m.Summary)
		if res.Grid != nil {
			m.Classes = classes(nat.Paths)
		}
	}
	if len(res.Paths) > 0 {
		m.Paths = pathRows(res.Paths)
	}
	m.Wakes = wakeRows(res)
	return m
}

// topology groups the hosts by network, in the order networks (or, without
// them, hosts) appear.
func topology(res results.Run) []netView {
	var nets []netView
	idx := map[string]int{}
	add := func(n netView) int {
		if i, ok := idx[n.Name]; ok {
			return i
		}
		idx[n.Name] = len(nets)
		nets = append(nets, n)
		return len(nets) - 1
	}
	for _, n := range res.Networks {
		add(netView{Name: n.Name, NAT: n.NAT, Subnet: n.Subnet, Public: n.Public})
	}
	for _, h := range res.Hosts {
		// A host on several networks shows on each, with its address there.
		nics := h.Networks
		if len(nics) == 0 {
			nics = []results.HostNIC{{Network: h.Network, Addr: h.Addr}}
		}
		for k, nic := range nics {
			i := add(netView{Name: nic.Network})
			on := h
			on.Addr = nic.Addr
			nets[i].Hosts = append(nets[i].Hosts, on)
			if nets[i].Public == "" && k == 0 {
				nets[i].Public = h.Public
			}
		}
	}
	return nets
}

// Timeline geometry, in SVG user units (the SVG scales to the page width).
const (
	tlWidth   = 1000.0
	tlLabelW  = 345.0 // the step names' column
	tlRight   = 24.0  // room for the last tick's label
	tlRowH    = 28.0
	tlBarH    = 16.0
	tlTop     = 30.0 // the axis labels above the rows
	tlBottom  = 26.0 // the bands' labels below the rows
	tlMinBar  = 3.0  // a step too short to see still gets a sliver
	tlSkipBar = 8.0
	tlMaxName = 42 // runes of a step's name beside its bar (the tooltip has it all)
)

type timeline struct {
	Width, Height, ChartX, ChartW float64
	Ticks                         []tick
	Bands                         []band
	Rows                          []row
}

// AxisBottom is where the grid lines end, BandH the shaded bands' height
// and BandLabelY their labels' baseline.
func (t *timeline) AxisBottom() float64 { return t.Height - tlBottom + 4 }
func (t *timeline) BandH() float64      { return t.Height - 22 }
func (t *timeline) BandLabelY() float64 { return t.Height - 8 }

// Mid is the middle of [x, x+w].
func (t *timeline) Mid(x, w float64) float64 { return x + w/2 }

type tick struct {
	X     float64
	Label string
}

// band is a shaded stretch of the run outside the steps (lab setup, teardown).
type band struct {
	X, W  float64
	Label string
}

type row struct {
	Y, TextY, BarY          float64
	BarX, BarW              float64
	Color, State, Name, Tip string
	Label                   string // duration or "skipped"
	LabelX                  float64
	LabelInside             bool
	LabelBefore             bool
	Index                   int
}

func layout(steps []stepView, total time.Duration) *timeline {
	end := total
	for _, s := range steps {
		if e := s.Offset + s.Dur; e > end {
			end = e
		}
	}
	if end <= 0 {
		end = time.Millisecond
	}
	t := &timeline{Width: tlWidth, ChartX: tlLabelW, ChartW: tlWidth - tlLabelW - tlRight}
	t.Height = tlTop + float64(len(steps))*tlRowH + tlBottom
	x := func(d time.Duration) float64 {
		return t.ChartX + t.ChartW*float64(d)/float64(end)
	}
	step := niceStep(end)
	for d := time.Duration(0); d <= end+step/1000; d += step {
		t.Ticks = append(t.Ticks, tick{X: x(d), Label: fmtTick(d, step)})
	}
	// Lab setup before the first step, teardown after the last.
	first, last := steps[0].Offset, time.Duration(0)
	for _, s := range steps {
		if e := s.Offset + s.Dur; e > last {
			last = e
		}
	}
	if first > 0 {
		t.Bands = append(t.Bands, band{X: t.ChartX, W: x(first) - t.ChartX, Label: "lab setup"})
	}
	if total > last {
		t.Bands = append(t.Bands, band{X: x(last), W: x(total) - x(last), Label: "teardown"})
	}
	for i := range t.Bands {
		if t.Bands[i].W < 70 {
			t.Bands[i].Label = ""
		}
	}
	for i, s := range steps {
		y := tlTop + float64(i)*tlRowH
		r := row{
			Y: y, TextY: y + tlRowH/2 + 4, BarY: y + (tlRowH-tlBarH)/2,
			BarX: x(s.Offset), Color: s.Color, State: s.State, Index: s.Index,
			Name: s.Name, Label: fmtDur(s.Dur),
		}
		r.BarW = x(s.Offset+s.Dur) - r.BarX
		switch {
		case s.State == "skipped":
			r.BarW, r.Label = tlSkipBar, "skipped"
		case r.BarW < tlMinBar:
			r.BarW = tlMinBar
		}
		if r.BarX+r.BarW > t.ChartX+t.ChartW {
			r.BarX = t.ChartX + t.ChartW - r.BarW
		}
		r.Tip = fmt.Sprintf("#%d %s: %s, start +%s", s.Index, s.Name, r.Label, fmtDur(s.Offset))
		if s.Error != "" {
			r.Tip += "\n" + s.Error
		}
		// The label goes after the bar, or inside its end if it would
		// leave the chart.
		// The label goes after the bar; if it would leave the chart,
		// inside the bar's end, or before the bar if the bar is short.
		const labelW = 60
		switch {
		case r.BarX+r.BarW+6+labelW <= t.ChartX+t.ChartW+tlRight:
			r.LabelX = r.BarX + r.BarW + 6
		case r.BarW > labelW+8:
			r.LabelInside, r.LabelX = true, r.BarX+r.BarW-6
		default:
			r.LabelBefore, r.LabelX = true, r.BarX-6
		}
		r.Name = truncate(s.Name, tlMaxName)
		t.Rows = append(t.Rows, r)
	}
	return t
}

// niceStep picks a tick interval of 1, 2 or 5 × 10^n giving 4 to 10 ticks.
func niceStep(d time.Duration) time.Duration {
	raw := float64(d) / 8
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return time.Duration(m * p)
		}
	}
	return time.Duration(10 * p)
}

func fmtTick(d, step time.Duration) string {
	switch {
	case d == 0:
		return "0"
	case step >= time.Second:
		return trimZero(fmt.Sprintf("%.1f", d.Seconds())) + " s"
	case step >= 100*time.Millisecond:
		return trimZero(fmt.Sprintf("%.2f", d.Seconds())) + " s"
	default:
		return trimZero(fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond))) + " ms"
	}
}

func trimZero(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// fmtDur is a short human duration: 143 ms, 1.52 s, 2 m 05 s.
func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		if d <= 0 {
			return "0 ms"
		}
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%d ms", d.Round(time.Millisecond)/time.Millisecond)
	case d < 10*time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1f s", d.Seconds())
	default:
		d = d.Round(time.Second)
		return fmt.Sprintf("%d m %02d s", d/time.Minute, (d%time.Minute)/time.Second)
	}
}

func truncate(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return strings.TrimRight(string(r[:n-1]), " ") + "…"
	}
	return s
}

func msDur(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }
