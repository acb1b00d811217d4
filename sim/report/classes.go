package report

import (
	"fmt"
	"io"
	"math"
	"slices"
	"text/tabwriter"

	"github.com/jumpmesh/jumpmesh/sim/results"
)

// The anchors a grid's direct rates are compared with.
const (
	// dcutrRate and dcutrSpread: libp2p's DCUtR hole punching in the wild,
	// 70 % ± 7 % of attempts succeeded (Trautwein et al., 2025, "Challenging
	// Tribal Knowledge: Large Scale Measurement Campaign on Decentralized
	// NAT Traversal").
	dcutrRate   = 0.70
	dcutrSpread = 0.07
	// tailscaleRate: Tailscale says its connections are direct "well north
	// of 90 %" of the time ("How NAT traversal works").
	tailscaleRate = 0.90
)

// classRow is a row of the pair-class table and of the anchors table.
type classRow struct {
	Name                    string
	Paths                   int
	Connected, Direct       rate
	ConnectedCls            string // good: every path connected
	AtOnce                  int
	FirstTry                string // k/n of the upgraded paths with a known attempt, or —
	TTD                     string // p50 / p90 / p99, or —
	TTDN                    int
	TCP, QUIC               int
	Probes                  string // probes sent, or —
	DCUtR, DCUtRCls         string // above / within / below the DCUtR anchor
	Tailscale, TailscaleCls string // meets / below the Tailscale anchor
	Total                   bool   // the "all pairs" row of the anchors table
}

// classTable is the grid by pair class.
type classTable struct {
	Rows []classRow
	All  classRow // every path, for the anchors table
}

// classes builds the pair-class tables from the paths (results.Classes,
// the function the runner writes into results.json); nil without paths.
func classes(paths []results.Path) *classTable {
	cs := results.Classes(paths)
	if len(cs) == 0 {
		return nil
	}
	t := &classTable{}
	for _, c := range cs {
		t.Rows = append(t.Rows, newClassRow(c))
	}
	t.All = newClassRow(allPairs(cs))
	t.All.Total = true
	return t
}

// allPairs sums the classes' connects, connections and direct paths.
func allPairs(cs []results.Class) results.Class {
	all := results.Class{Class: "all pairs"}
	for _, c := range cs {
		all.Paths += c.Paths
		all.Connected += c.Connected
		all.Direct += c.Direct
	}
	return all
}

func newClassRow(c results.Class) classRow {
	r := classRow{Name: c.Class, Paths: c.Paths, Connected: rate{c.Connected, c.Paths}, Direct: rate{c.Direct, c.Paths},
		AtOnce: c.AtOnce, FirstTry: "—", TTD: "—", TCP: c.TCP, QUIC: c.QUIC, Probes: "—"}
	if c.AttemptKnown > 0 {
		r.FirstTry = fmt.Sprintf("%d/%d", c.FirstTry, c.AttemptKnown)
	}
	if t := c.TimeToDirect; t != nil {
		r.TTD = fmt.Sprintf("%s / %s / %s", fmtMS(t.P50), fmtMS(t.P90), fmtMS(t.P99))
		r.TTDN = t.N
	}
	if c.Probed > 0 {
		r.Probes = fmt.Sprintf("%d in %d path%s", c.ProbesSent, c.Probed, plural(c.Probed))
	}
	r.ConnectedCls = "good"
	if c.Connected < c.Paths {
		r.ConnectedCls = "bad"
	}
	r.DCUtR, r.DCUtRCls = vsDCUtR(c.DirectRate())
	r.Tailscale, r.TailscaleCls = vsTailscale(c.DirectRate())
	return r
}

// vsDCUtR places a direct rate against libp2p DCUtR's 70 % ± 7 %.
func vsDCUtR(x float64) (string, string) {
	d := math.Round(100 * (x - dcutrRate)) // percentage points
	switch {
	case x > dcutrRate+dcutrSpread:
		return fmt.Sprintf("above (+%.0f points)", d), "good"
	case x >= dcutrRate-dcutrSpread:
		return fmt.Sprintf("within (%+.0f points)", d), "fair"
	default:
		return fmt.Sprintf("below (%.0f points)", d), "bad"
	}
}

// vsTailscale places a direct rate against Tailscale's "well north of 90 %".
func vsTailscale(x float64) (string, string) {
	if x > tailscaleRate {
		return "meets", "good"
	}
	return fmt.Sprintf("below (%.0f points)", math.Round(100*(x-tailscaleRate))), "bad"
}

// WriteClasses writes a grid's pair classes as a plain-text table, the
// anchors' columns included (for logs and terminals).
func WriteClasses(w io.Writer, cs []results.Class) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "class\tconnects\tconnected\tdirect\tat once\tfirst try\tto direct p50 / p90 / p99\ttcp / quic\tprobes sent\tvs DCUtR 70±7 %\tvs Tailscale >90 %")
	all := allPairs(cs)
	for _, c := range append(slices.Clone(cs), all) {
		r := newClassRow(c)
		if r.Name == all.Class {
			fmt.Fprintf(tw, "%s\t%d\t%d/%d\t%d/%d (%s)\t\t\t\t\t\t%s\t%s\n", r.Name, r.Paths, r.Connected.K, r.Connected.N,
				r.Direct.K, r.Direct.N, r.Direct.Pct(), r.DCUtR, r.Tailscale)
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%d/%d\t%d/%d (%s)\t%d\t%s\t%s\t%d / %d\t%s\t%s\t%s\n", r.Name, r.Paths, r.Connected.K, r.Connected.N,
			r.Direct.K, r.Direct.N, r.Direct.Pct(), r.AtOnce, r.FirstTry, r.TTD, r.TCP, r.QUIC, r.Probes, r.DCUtR, r.Tailscale)
	}
	return tw.Flush()
}
