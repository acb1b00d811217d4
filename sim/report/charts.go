package report

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/jumpmesh/jumpmesh/sim/results"
)

// Distribution chart geometry: each chart is a cumulative plot (a dot per
// path at its time, the share of paths at or below it) with p50 and p90
// marked, two charts side by side.
const (
	dWidth  = 520.0
	dHeight = 250.0
	dLeft   = 44.0 // the y axis' labels
	dRight  = 28.0
	dTop    = 46.0 // the marks' labels
	dBottom = 30.0 // the x axis' labels
)

type dist struct {
	Title, Note    string
	Width, Height  float64
	X0, Y0, X1, Y1 float64 // the plot area
	XTicks, YTicks []tick
	Curve          string // SVG points of the step curve
	Dots           []dot
	Marks          []mark
	N              int
	Empty          string // why there is nothing to plot
}

type dot struct {
	X, Y      float64
	Fill, Tip string
}

// mark is a vertical line at a percentile or a target.
type mark struct {
	X, LabelY float64
	Label     string
	Class     string // p50 | p90 | target
	Anchor    string
}

type sample struct {
	ms   float64
	fill string
	tip  string
}

func distributions(paths []results.Path, s *summary) []*dist {
	var connects, ttds []sample
	for _, p := range paths {
		if p.OK {
			fill := colorRelayed
			if p.Initial == "direct" {
				fill = colorDirect
			}
			connects = append(connects, sample{p.ConnectMS, fill, fmt.Sprintf("%s: connected %s in %s", pair(p), p.Initial, fmtMS(p.ConnectMS))})
		}
		if upgraded(p) {
			ttds = append(ttds, sample{p.TimeToDirectMS, colorDirect, fmt.Sprintf("%s: direct after %s", pair(p), fmtMS(p.TimeToDirectMS))})
		}
	}
	c := cdf("Time to connect", connects, 0)
	c.Note = "from the jump to the first connection"
	c.Empty = "no path connected"
	t := cdf("Time to direct", ttds, s.Target)
	t.Note = "from relayed to direct, for the paths that started relayed"
	t.Empty = "no path went from relayed to direct"
	return []*dist{c, t}
}

// cdf lays out one chart; target, if positive, is drawn as a third mark.
func cdf(title string, samples []sample, target float64) *dist {
	d := &dist{Title: title, Width: dWidth, Height: dHeight, N: len(samples),
		X0: dLeft, Y0: dTop, X1: dWidth - dRight, Y1: dHeight - dBottom}
	if len(samples) == 0 {
		return d
	}
	slices.SortStableFunc(samples, func(a, b sample) int { return cmp.Compare(a.ms, b.ms) })
	vals := make([]float64, len(samples))
	for i, s := range samples {
		vals[i] = s.ms
	}
	top := max(vals[len(vals)-1], target)
	if top <= 0 {
		top = 1
	}
	end := msDur(top * 1.04)
	step := niceStep(end)
	end = step * time.Duration(math.Ceil(float64(end)/float64(step)))
	x := func(ms float64) float64 {
		return round1(d.X0 + (d.X1-d.X0)*ms/(float64(end)/float64(time.Millisecond)))
	}
	y := func(f float64) float64 { return round1(d.Y1 - (d.Y1-d.Y0)*f) }
	for v := time.Duration(0); v <= end; v += step {
		d.XTicks = append(d.XTicks, tick{X: x(float64(v) / float64(time.Millisecond)), Label: msTick(v, step, end)})
	}
	for _, f := range []float64{0, .25, .5, .75, 1} {
		d.YTicks = append(d.YTicks, tick{X: y(f), Label: fmt.Sprintf("%.0f%%", 100*f)})
	}
	n := float64(len(vals))
	pts := []string{fmt.Sprintf("%g,%g", x(0), y(0))}
	for i, s := range samples {
		px, py := x(s.ms), y(float64(i+1)/n)
		pts = append(pts, fmt.Sprintf("%g,%g", px, y(float64(i)/n)), fmt.Sprintf("%g,%g", px, py))
		d.Dots = append(d.Dots, dot{X: px, Y: py, Fill: s.fill, Tip: s.tip})
	}
	pts = append(pts, fmt.Sprintf("%g,%g", d.X1, y(1)))
	d.Curve = strings.Join(pts, " ")
	d.Marks = []mark{
		{X: x(percentile(vals, 50)), Label: "p50 " + fmtMS(percentile(vals, 50)), Class: "p50"},
		{X: x(percentile(vals, 90)), Label: "p90 " + fmtMS(percentile(vals, 90)), Class: "p90"},
	}
	if target > 0 {
		d.Marks = append(d.Marks, mark{X: x(target), Label: "target " + fmtMS(target), Class: "target"})
	}
	// Labels on rows of their own, right of their line unless that leaves
	// the chart.
	for i := range d.Marks {
		m := &d.Marks[i]
		m.LabelY = d.Y0 - 30 + float64(i)*13
		m.Anchor = "start"
		m.X = round1(m.X)
		if m.X+90 > d.Width {
			m.Anchor = "end"
		}
	}
	return d
}

// msTick labels an x tick in milliseconds up to 2 s, else as the timeline does.
func msTick(v, step, end time.Duration) string {
	if v == 0 || end > 2*time.Second {
		return fmtTick(v, step)
	}
	return trimZero(fmt.Sprintf("%.1f", float64(v)/float64(time.Millisecond))) + " ms"
}

// XTickEnd is where the x axis' tick marks end, XLabelY their labels' baseline.
func (d *dist) XTickEnd() float64 { return d.Y1 + 5 }
func (d *dist) XLabelY() float64  { return d.Y1 + 18 }

// LabelLineTop is where a mark's line starts, under its label.
func (m mark) LabelLineTop() float64 { return m.LabelY + 4 }

// LabelX is where a mark's label starts (or ends).
func (m mark) LabelX() float64 {
	if m.Anchor == "end" {
		return m.X - 4
	}
	return m.X + 4
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }
