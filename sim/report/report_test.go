package report

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"html"
	"image/color"
	imagepng "image/png"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/sim/results"
)

const hostile = `<script>alert("x")</script>`

// synthetic is a failed run: one ok step, one failed, one skipped.
func synthetic() results.Run {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	return results.Run{
		Scenario: "demo", Lab: "jmlab-test-", Started: t0, DurationMS: 3500,
		Error: "step 2 (exec web-01 -- hostname) failed",
		Networks: []results.Network{
			{Name: "dc", NAT: "public"},
			{Name: "home", NAT: "easy", Subnet: "192.168.50.0/24", Public: "203.0.113.10"},
		},
		Hosts: []results.Host{
			{Name: "coordinator", Network: "dc", Role: "coordinator", Addr: "198.51.100.10"},
			{Name: "web-01", Network: "home", Role: "peer", Addr: "192.168.50.10", Public: "203.0.113.10",
				NAT: &results.HostNAT{TCP: "endpoint-independent", UDP: "unknown", PortPreserving: true, Observers: 2, Hairpinning: "no"}},
			{Name: "laptop", Network: "home", Role: "console", Addr: "192.168.50.11", Public: "203.0.113.10"},
		},
		Steps: []results.Step{
			{Index: 1, Name: "init", Start: t0.Add(10 * time.Millisecond), DurationMS: 1000, OK: true, Output: "coordinator ready\nlogged in"},
			{Index: 2, Name: "exec web-01 -- " + hostile, Start: t0.Add(1010 * time.Millisecond), DurationMS: 2000,
				Error: "exit 1, want 0: " + hostile, Output: "before\n" + hostile + "\nafter"},
			{Index: 3, Name: "stop web-01", Start: t0.Add(3010 * time.Millisecond), Skipped: true},
		},
	}
}

func render(t *testing.T, res results.Run) string {
	t.Helper()
	var b bytes.Buffer
	if err := Render(&b, res); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// wellFormed parses the page as (lenient) HTML and fails on a syntax error.
func wellFormed(t *testing.T, page string) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(page))
	d.Strict = false
	d.AutoClose = xml.HTMLAutoClose
	d.Entity = xml.HTMLEntity
	for {
		if _, err := d.Token(); err != nil {
			if errors.Is(err, io.EOF) {
				return
			}
			t.Fatalf("page does not parse: %v", err)
		}
	}
}

type svgRect struct {
	Class string `xml:"class,attr"`
	Fill  string `xml:"fill,attr"`
	X     string `xml:"x,attr"`
	Width string `xml:"width,attr"`
}

// bars parses the timeline SVG strictly (it must be well-formed XML) and
// returns its step bars in order.
func bars(t *testing.T, page string) []svgRect {
	t.Helper()
	i, j := strings.Index(page, "<svg"), strings.LastIndex(page, "</svg>")
	if i < 0 || j < i {
		t.Fatal("no SVG in the page")
	}
	d := xml.NewDecoder(strings.NewReader(page[i : j+len("</svg>")]))
	d.Strict = true
	var out []svgRect
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "rect" {
			var r svgRect
			if err := d.DecodeElement(&r, &se); err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(r.Class, "bar ") {
				out = append(out, r)
			}
		}
	}
}

func TestRender(t *testing.T) {
	page := render(t, synthetic())
	wellFormed(t, page)

	got := bars(t, page)
	want := []svgRect{{Class: "bar ok", Fill: colorOK}, {Class: "bar failed", Fill: colorFailed}, {Class: "bar skipped", Fill: colorSkipped}}
	if len(got) != len(want) {
		t.Fatalf("%d bars, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i].Class != want[i].Class || got[i].Fill != want[i].Fill {
			t.Errorf("bar %d: %s %s, want %s %s", i+1, got[i].Class, got[i].Fill, want[i].Class, want[i].Fill)
		}
	}
	// The failed step (2 s) is drawn twice as long as the ok one (1 s).
	if w1, w2 := got[0].Width, got[1].Width; !(len(w1) > 0 && atof(t, w2) > 1.9*atof(t, w1) && atof(t, w2) < 2.1*atof(t, w1)) {
		t.Errorf("bar widths %s and %s, want 1:2", w1, w2)
	}

	for _, s := range []string{
		"<h1>demo</h1>", `class="badge failed"`, "3.50 s", "2026-03-01 12:00:00 UTC",
		"NAT: easy", "NAT: public", "192.168.50.0/24", `class="role console"`, "198.51.100.10",
		"+1.01 s", "2.00 s", "<details open>", "lab setup", "jmlab-test-",
		"NAT tcp endpoint-independent (port-preserving), udp unknown, hairpinning: no, 2 observers",
	} {
		if !strings.Contains(page, s) {
			t.Errorf("page lacks %q", s)
		}
	}
	if n := strings.Count(page, "<details"); n != 2 {
		t.Errorf("%d <details>, want 2 (the steps with output)", n)
	}
}

func TestEscapes(t *testing.T) {
	page := render(t, synthetic())
	if strings.Contains(strings.ToLower(page), "<script") {
		t.Fatal("a step's output or name reached the page unescaped")
	}
	if !strings.Contains(page, "&lt;script&gt;") {
		t.Error("the hostile string is not in the page, escaped")
	}
	if strings.Contains(page, `alert("x")`) {
		t.Error(`quotes in the hostile string are not escaped`)
	}
}

func TestPassedAndEmpty(t *testing.T) {
	res := synthetic()
	res.OK, res.Error = true, ""
	res.Networks = nil
	res.Steps = res.Steps[:1]
	page := render(t, res)
	wellFormed(t, page)
	if !strings.Contains(page, `class="badge passed"`) || strings.Contains(page, `class="runerr"`) {
		t.Error("a passed run is not shown as passed")
	}
	// Without networks, the topology comes from the hosts.
	if !strings.Contains(page, "behind NAT") || !strings.Contains(page, "203.0.113.10") {
		t.Error("topology without networks lacks the NAT's public address")
	}
	// A run that could not start: no steps, no hosts.
	page = render(t, results.Run{Scenario: "broken", Error: "netlab: needs root"})
	wellFormed(t, page)
	if strings.Contains(page, "<svg") || !strings.Contains(page, "netlab: needs root") {
		t.Error("an empty run renders badly")
	}
}

// TestFromResultsFile writes results with the runner's writer and renders
// them from the file: the page is the one the values themselves give, so
// every field the runner writes reaches the report.
func TestFromResultsFile(t *testing.T) {
	fromFile := func(res results.Run) string {
		t.Helper()
		dir := t.TempDir()
		path := filepath.Join(dir, results.File)
		if err := res.Write(path); err != nil {
			t.Fatal(err)
		}
		if err := FromResultsFile(path); err != nil {
			t.Fatal(err)
		}
		page, err := os.ReadFile(filepath.Join(dir, File))
		if err != nil {
			t.Fatal(err)
		}
		return string(page)
	}
	if page := fromFile(gridResults()); page != render(t, gridResults()) {
		t.Error("the grid page rendered from results.json differs from the one rendered from the values")
	}
	page := fromFile(synthetic())
	if page != render(t, synthetic()) {
		t.Error("the page rendered from results.json differs from the one rendered from the values")
	}
	wellFormed(t, page)
	if len(bars(t, page)) != 3 {
		t.Error("report.html from results.json lacks the bars")
	}
	// Self-contained: nothing is fetched.
	for _, s := range []string{"http://", "https://", "<link", "src="} {
		if strings.Contains(strings.ReplaceAll(page, `xmlns="http://www.w3.org/2000/svg"`, ""), s) {
			t.Errorf("page refers to something outside it: %q", s)
		}
	}
	if err := FromResultsFile(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("a missing results file is not an error")
	}
}

func TestScale(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		step time.Duration
	}{
		{2850 * time.Millisecond, 500 * time.Millisecond},
		{40 * time.Millisecond, 5 * time.Millisecond},
		{90 * time.Second, 20 * time.Second},
	} {
		if got := niceStep(c.d); got != c.step {
			t.Errorf("niceStep(%v) = %v, want %v", c.d, got, c.step)
		}
	}
	for d, want := range map[time.Duration]string{
		0: "0 ms", 143 * time.Millisecond: "143 ms", 1520 * time.Millisecond: "1.52 s",
		25 * time.Second: "25.0 s", 125 * time.Second: "2 m 05 s",
	} {
		if got := fmtDur(d); got != want {
			t.Errorf("fmtDur(%v) = %q, want %q", d, got, want)
		}
	}
}

func atof(t *testing.T, s string) float64 {
	t.Helper()
	var f float64
	if err := json.Unmarshal([]byte(s), &f); err != nil {
		t.Fatalf("not a number: %q", s)
	}
	return f
}

// gridPresets is the synthetic grid's order, which is not alphabetical.
var gridPresets = []string{"public", "easy", "hard", "cgnat", "udp-blocked"}

// gridResults is a 5×5 grid of two runs with every kind of cell:
//   - peer public: direct at once (40 ms to connect);
//   - console public, or both sides endpoint-independent: relayed, then
//     direct after 90 ms (console public), 120 ms (run 1) or 180 ms (run 2);
//   - hard with easy: relayed in run 1, direct after 400 ms in run 2 (mixed);
//   - hard with hard, cgnat or udp-blocked: relayed;
//   - console cgnat, peer hard, run 2: failed.
//
// Run 1: 18 direct, 7 relayed; run 2: 20 direct, 4 relayed, 1 failed. The 28
// times to direct sort as 8 × 90, 9 × 120, 9 × 180, 2 × 400 ms: p50 120 ms,
// p90 180 ms; every relay RTT is 60 ms, so the target is 150 ms and 17 of
// the 28 are within it.
func gridResults() results.Run {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	res := results.Run{
		Scenario: "nat-grid", Lab: "jmlab-grid-", Started: t0, OK: true,
		Grid: &results.Grid{Presets: gridPresets, Runs: 2, LatencyMS: 15, WaitMS: 10000},
	}
	res.Networks = append(res.Networks, results.Network{Name: "dc", NAT: "public"})
	res.Hosts = append(res.Hosts, results.Host{Name: "coordinator", Network: "dc", Role: "coordinator", Addr: "198.51.100.10"},
		results.Host{Name: "relay", Network: "dc", Role: "relay", Addr: "198.51.100.11"})
	for i, p := range gridPresets {
		pub := fmt.Sprintf("203.0.113.%d", 10+i)
		res.Networks = append(res.Networks, results.Network{Name: "con-" + p, NAT: p, Public: pub}, results.Network{Name: "peer-" + p, NAT: p, Public: pub})
		res.Hosts = append(res.Hosts, results.Host{Name: "con-" + p, Network: "con-" + p, Role: "console", Addr: fmt.Sprintf("192.168.%d.10", 2*i+1)},
			results.Host{Name: "peer-" + p, Network: "peer-" + p, Role: "peer", Addr: fmt.Sprintf("192.168.%d.10", 2*i+2)})
	}
	at := t0.Add(200 * time.Millisecond)
	step := func(name string, ms float64) {
		res.Steps = append(res.Steps, results.Step{Index: len(res.Steps) + 1, Name: name, Start: at, DurationMS: ms, OK: true})
		at = at.Add(msDur(ms))
	}
	step("init", 900)
	step("relay relay", 400)
	for _, p := range gridPresets {
		step("install peer-"+p, 700)
	}
	ei := func(n string) bool { return n != "hard" }
	for run := 1; run <= 2; run++ {
		for _, c := range gridPresets {
			for _, p := range gridPresets {
				path := results.Path{Run: run, Console: "con-" + c, Peer: "peer-" + p, ConsoleNAT: c, PeerNAT: p, OK: true,
					Initial: "relayed", Final: "relayed", ConnectMS: 250, RTTMS: 60, RelayRTTMS: 60}
				direct := func(ttd float64) {
					path.Final, path.TimeToDirectMS, path.RTTMS, path.Transport = "direct", ttd, 30, "quic"
					if c == "udp-blocked" || p == "udp-blocked" {
						path.Transport = "tcp"
					}
					path.FinalAddr = fmt.Sprintf("203.0.113.%d:4001", 10+slices.Index(gridPresets, p))
				}
				switch {
				case p == "public":
					direct(0)
					path.Initial, path.ConnectMS, path.FinalAddr = "direct", 40, "198.51.100.20:4001"
				case c == "public":
					direct(90)
				case c == "cgnat" && p == "hard" && run == 2:
					path = results.Path{Run: run, Console: path.Console, Peer: path.Peer, ConsoleNAT: c, PeerNAT: p,
						Error: "no connection within 30s: " + hostile}
				case ei(c) && ei(p):
					direct(map[int]float64{1: 120, 2: 180}[run])
				case (c == "easy" || p == "easy") && run == 2:
					direct(400)
				}
				res.Paths = append(res.Paths, path)
				step(fmt.Sprintf("connect con-%s peer-%s", c, p), 300+path.ConnectMS+path.TimeToDirectMS)
			}
		}
	}
	res.DurationMS = float64(at.Sub(t0)/time.Millisecond) + 300
	return res
}

type heatCell struct {
	Class string
	Texts []string
}

// heatCells parses the heat map's SVG strictly and returns its cells, row
// by row.
func heatCells(t *testing.T, page string) []heatCell {
	t.Helper()
	i := strings.Index(page, `<svg class="heat"`)
	if i < 0 {
		return nil
	}
	j := i + strings.Index(page[i:], "</svg>") + len("</svg>")
	d := xml.NewDecoder(strings.NewReader(page[i:j]))
	d.Strict = true
	var cells []heatCell
	var in *heatCell
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return cells
		}
		if err != nil {
			t.Fatalf("heat map SVG is not well-formed XML: %v", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if tok.Name.Local == "g" {
				for _, a := range tok.Attr {
					if c, ok := strings.CutPrefix(a.Value, "cell "); a.Name.Local == "class" && ok {
						cells = append(cells, heatCell{Class: c})
						in = &cells[len(cells)-1]
					}
				}
			}
			if tok.Name.Local == "text" && in != nil {
				var s string
				if err := d.DecodeElement(&s, &tok); err != nil {
					t.Fatal(err)
				}
				in.Texts = append(in.Texts, s)
			}
		case xml.EndElement:
			if tok.Name.Local == "g" {
				in = nil
			}
		}
	}
}

func TestReportGrid(t *testing.T) {
	page := render(t, gridResults())
	wellFormed(t, page)
	cells := heatCells(t, page)
	if len(cells) != 25 {
		t.Fatalf("%d heat map cells, want 25", len(cells))
	}
	at := func(console, peer string) heatCell {
		return cells[slices.Index(gridPresets, console)*5+slices.Index(gridPresets, peer)]
	}
	for _, c := range []struct {
		console, peer string
		want          heatCell
	}{
		{"public", "public", heatCell{"direct", []string{"direct 2/2", "direct at once", "quic"}}},
		{"hard", "public", heatCell{"direct", []string{"direct 2/2", "direct at once", "quic"}}},
		{"public", "hard", heatCell{"direct", []string{"direct 2/2", "p50 90 ms to direct", "quic"}}},
		{"easy", "easy", heatCell{"direct", []string{"direct 2/2", "p50 150 ms to direct", "quic"}}},
		{"easy", "udp-blocked", heatCell{"direct", []string{"direct 2/2", "p50 150 ms to direct", "tcp"}}},
		{"easy", "hard", heatCell{"mixed", []string{"direct 1/2", "p50 400 ms to direct", "quic"}}},
		{"hard", "easy", heatCell{"mixed", []string{"direct 1/2", "p50 400 ms to direct", "quic"}}},
		{"hard", "hard", heatCell{"relayed", []string{"relayed 2/2", "never direct"}}},
		{"udp-blocked", "hard", heatCell{"relayed", []string{"relayed 2/2", "never direct"}}},
		{"cgnat", "hard", heatCell{"failed", []string{"failed 1/2", "no connection"}}},
	} {
		if got := at(c.console, c.peer); !reflect.DeepEqual(got, c.want) {
			t.Errorf("cell console %s × peer %s: %+v, want %+v", c.console, c.peer, got, c.want)
		}
	}
	count := map[string]int{}
	for _, c := range cells {
		count[c.Class]++
	}
	if want := map[string]int{"direct": 18, "mixed": 2, "relayed": 4, "failed": 1}; !reflect.DeepEqual(count, want) {
		t.Errorf("cells by class %v, want %v", count, want)
	}
	// Axes in the grid's order, with their titles.
	for _, s := range []string{"peer behind", "console behind", `id="hm-mix-1-2"`, "15 ms one-way", "2 runs per pair"} {
		if !strings.Contains(page, s) {
			t.Errorf("page lacks %q", s)
		}
	}
	if i, j := strings.Index(page, `text-anchor="middle">udp-blocked</text>`), strings.Index(page, `text-anchor="middle">public</text>`); i < 0 || j < 0 || j > i {
		t.Error("the columns are not in the grid's order")
	}

	s := summarize(gridResults().Paths)
	for name, c := range map[string]struct{ got, want any }{
		"connected": {s.Connected, rate{49, 50}},
		"direct":    {s.Direct, rate{38, 50}},
		"ei direct": {s.EIDirect, rate{32, 32}},
		"at once":   {s.AtOnce, rate{10, 49}},
		"by run":    {s.ByRun, []runRate{{1, rate{18, 25}}, {2, rate{20, 25}}}},
		"ttd n":     {len(s.TTD), 28},
		"p50":       {s.P50, 120.0},
		"p90":       {s.P90, 180.0},
		"target":    {s.Target, 150.0},
		"met":       {s.Met, true},
		"within":    {s.WithinOwn, rate{17, 28}},
		"connect":   {[2]float64{s.ConnectP50, s.ConnectP90}, [2]float64{250, 250}},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("summary %s: %v, want %v", name, c.got, c.want)
		}
	}
	for id, want := range map[string][]string{
		"sum-connected": {"49/50"},
		"sum-direct":    {"76%", "38 of 50"},
		"sum-ei":        {"100%", "32 of 32"},
		"sum-first":     {"72%", "direct on run 1", "run 2: 80%"},
		"sum-once":      {"20%", "10 of 49"},
		"sum-ttd50":     {"120 ms", "✔", "target ≤ 150 ms = 2 × 60 ms relay RTT + 30 ms"},
		"sum-ttd90":     {"180 ms", "17 of 28 within their own target"},
	} {
		card := card(t, page, id)
		for _, w := range want {
			if !strings.Contains(card, w) {
				t.Errorf("card %s lacks %q: %s", id, w, card)
			}
		}
	}

	// Distributions: a dot per connected path and per upgrade, p50 and p90
	// marked, the target on the time to direct.
	if n := strings.Count(page, "<circle"); n != 49+28 {
		t.Errorf("%d dots, want %d", n, 49+28)
	}
	for _, s := range []string{"p50 250 ms", "p50 120 ms", "p90 180 ms", "target 150 ms"} {
		if !strings.Contains(page, s) {
			t.Errorf("distributions lack %q", s)
		}
	}
	// The table: a row per path, the failure escaped.
	if n := strings.Count(page, "<tr class=\"failed\">"); n != 1 {
		t.Errorf("%d failed path rows, want 1", n)
	}
	if !strings.Contains(page, `<td colspan="8" class="err">no connection within 30s: &lt;script&gt;`) {
		t.Error("the failed path's error is not under its row")
	}
	if strings.Contains(page, "<script") {
		t.Error("a path's error reached the page unescaped")
	}

	// Missed target: three times slower.
	slow := gridResults()
	for i := range slow.Paths {
		slow.Paths[i].TimeToDirectMS *= 3
	}
	if card := card(t, render(t, slow), "sum-ttd50"); !strings.Contains(card, "360 ms") || !strings.Contains(card, "✘") {
		t.Errorf("a missed target is not shown as missed: %s", card)
	}
}

// card is the summary card with the given id.
func card(t *testing.T, page, id string) string {
	t.Helper()
	i := strings.Index(page, `id="`+id+`"`)
	if i < 0 {
		t.Fatalf("no card %s", id)
	}
	j := strings.Index(page[i:], "</div></div>")
	return page[i : i+j]
}

func TestReportGridOrderWithoutGridInfo(t *testing.T) {
	res := results.Run{Scenario: "pairs", Paths: []results.Path{
		{Run: 1, ConsoleNAT: "hard", PeerNAT: "easy", OK: true, Initial: "relayed", Final: "relayed"},
		{Run: 1, ConsoleNAT: "easy", PeerNAT: "cgnat", OK: true, Initial: "direct", Final: "direct", Transport: "tcp"},
	}}
	page := render(t, res)
	wellFormed(t, page)
	cells := heatCells(t, page)
	// Rows hard, easy; columns easy, cgnat: the order of first appearance.
	want := []heatCell{
		{"relayed", []string{"relayed", "never direct"}}, {"empty", []string{"not run"}},
		{"empty", []string{"not run"}}, {"direct", []string{"direct", "direct at once", "tcp"}},
	}
	if !reflect.DeepEqual(cells, want) {
		t.Errorf("cells %+v, want %+v", cells, want)
	}
	// One run: no card per run.
	if strings.Contains(page, `id="sum-first"`) {
		t.Error("a single run has a card per run")
	}
	// No relayed → direct: no time to direct, no target.
	if c := card(t, page, "sum-ttd50"); !strings.Contains(c, "—") || strings.Contains(c, "✔") || strings.Contains(c, "✘") {
		t.Errorf("time to direct without upgrades: %s", c)
	}
}

func TestReportWithoutPaths(t *testing.T) {
	page := render(t, synthetic())
	for _, s := range []string{`class="heat"`, "NAT grid", "NAT traversal", "Distributions", `class="paths"`} {
		if strings.Contains(page, s) {
			t.Errorf("a run without paths shows %q", s)
		}
	}
}

// TestReportInChromium renders the grid report in headless Chromium, if the
// machine has one, and checks that the heat map's colours reach the
// screen. With REPORT_PNG=FILE the screenshot is kept there, to look at.
func TestReportInChromium(t *testing.T) {
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	switch {
	case testing.Short():
		t.Skip("-short")
	case bin == "" && os.Geteuid() == 0:
		// make deps installs it when root: CI must render the report.
		t.Fatal("no headless Chromium: make deps installs Debian's chromium when root")
	case bin == "":
		t.Skip("no headless Chromium (make deps installs it when root)")
	}
	dir := t.TempDir()
	if err := Write(dir, gridResults()); err != nil {
		t.Fatal(err)
	}
	png := filepath.Join(dir, "report.png")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The background-networking flags keep Chromium from dialling out: this
	// machine's network is closed and the refused connections slow it down.
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
		"--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+filepath.Join(dir, "profile"), "--window-size=1400,2400",
		"--screenshot="+png, "file://"+filepath.Join(dir, File))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, out)
	}
	if keep := os.Getenv("REPORT_PNG"); keep != "" {
		b, err := os.ReadFile(png)
		if err == nil {
			err = os.WriteFile(keep, b, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(png)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := imagepng.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	// Pixels of each cell colour; a cell is about 145 × 79 units.
	want := map[string]color.RGBA{"direct": hexRGBA(colorDirect), "relayed": hexRGBA(colorRelayed), "failed": hexRGBA(colorFailed)}
	got := map[string]int{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)
			for name, w := range want {
				if near(c, w) {
					got[name]++
				}
			}
		}
	}
	for name, min := range map[string]int{"direct": 18 * 8000, "relayed": 4 * 8000, "failed": 8000} {
		if got[name] < min {
			t.Errorf("%d pixels of %s (%v) on the screenshot, want at least %d", got[name], name, want[name], min)
		}
	}
}

func hexRGBA(s string) color.RGBA {
	var c color.RGBA
	fmt.Sscanf(s, "#%02x%02x%02x", &c.R, &c.G, &c.B)
	c.A = 255
	return c
}

func near(a, b color.RGBA) bool {
	d := func(x, y uint8) int { return max(int(x)-int(y), int(y)-int(x)) }
	return d(a.R, b.R) <= 6 && d(a.G, b.G) <= 6 && d(a.B, b.B) <= 6
}

// TestReportJumpointPaths: paths through a jumpoint are listed (a jumpoint
// chip naming it, the peer's address) but are not NAT traversal figures; a
// dual-homed host shows on both its networks with its address on each.
func TestReportJumpointPaths(t *testing.T) {
	res := synthetic()
	res.Networks = append(res.Networks, results.Network{Name: "plant", NAT: "isolated", Subnet: "10.20.0.0/24"})
	res.Hosts = append(res.Hosts,
		results.Host{Name: "j-1", Network: "plant", Role: "jumpoint", Addr: "10.20.0.10", Public: "203.0.113.10",
			Networks: []results.HostNIC{{Network: "plant", Addr: "10.20.0.10"}, {Network: "home", Addr: "192.168.50.12"}}},
		results.Host{Name: "plc", Network: "plant", Role: "peer", Addr: "10.20.0.11"})
	res.Paths = []results.Path{
		{Run: 1, Console: "laptop", Peer: "plc", ConsoleNAT: "easy", PeerNAT: "isolated", OK: true, Initial: "jumpoint",
			Final: "jumpoint", Jumpoint: "j-1", FinalAddr: "/ip4/10.20.0.11/tcp/4831", ConnectMS: 700, RTTMS: 30},
	}
	page := render(t, res)
	wellFormed(t, page)
	for _, s := range []string{`<span class="pathchip jumpoint">jumpoint</span>`, `<span class="tp">via j-1</span>`,
		"/ip4/10.20.0.11/tcp/4831", `class="paths"`, "<code>10.20.0.10</code>", "<code>192.168.50.12</code>"} {
		if !strings.Contains(page, s) {
			t.Errorf("the page lacks %q", s)
		}
	}
	for _, s := range []string{"NAT traversal", `class="heat"`, "Distributions"} {
		if strings.Contains(page, s) {
			t.Errorf("jumpoint paths alone show %q", s)
		}
	}
	// With a relayed path too, the NAT figures count that one only.
	res.Paths = append(res.Paths, results.Path{Run: 1, Console: "laptop", Peer: "web-01", ConsoleNAT: "easy", PeerNAT: "easy",
		OK: true, Initial: "relayed", Final: "relayed", ConnectMS: 300})
	page = render(t, res)
	if c := card(t, page, "sum-connected"); !strings.Contains(c, "<b>1/1</b>") {
		t.Errorf("connected card counts the jumpoint path: %s", c)
	}
}

// TestReportClasses: the grid by pair class (results.Classes) and against
// the anchors, DCUtR's 70 % ± 7 % and Tailscale's "well north of 90 %".
func TestReportClasses(t *testing.T) {
	res := gridResults()
	for i, p := range res.Paths {
		if p.ConsoleNAT == "easy" && p.PeerNAT == "hard" && p.Run == 2 {
			res.Paths[i].ProbesSent = 300
		}
		// The punch attempt known for the easy console's upgrades: first
		// try but to the cgnat peer in run 2.
		if p.ConsoleNAT == "easy" && p.Initial == "relayed" && p.Final == "direct" {
			res.Paths[i].PunchAttempt = 1
			if p.PeerNAT == "cgnat" && p.Run == 2 {
				res.Paths[i].PunchAttempt = 2
			}
		}
	}
	page := render(t, res)
	wellFormed(t, page)
	table := func(id string) []string {
		t.Helper()
		i := strings.Index(page, `id="`+id+`"`)
		if i < 0 {
			t.Fatalf("no table %s", id)
		}
		j := strings.Index(page[i:], "</table>")
		var rows []string
		for _, tr := range strings.Split(page[i:i+j], "<tr")[2:] { // past the header
			rows = append(rows, strings.Join(strings.Fields(stripTags("<tr"+tr)), " "))
		}
		return rows
	}
	want := []string{
		"endpoint-independent 18 18/18 18/18 (100%) 6 3/4 120 ms / 180 ms / 180 ms 0 / 18 —",
		"hard × endpoint-independent 12 11/12 6/12 (50%) 2 1/1 245 ms / 400 ms / 400 ms 0 / 6 300 in 1 path",
		"hard × hard 2 2/2 0/2 (0%) 0 — — 0 / 0 —",
		"udp-blocked side 18 18/18 14/18 (78%) 2 2/2 120 ms / 180 ms / 180 ms 14 / 0 —",
	}
	if got := table("classes"); !reflect.DeepEqual(got, want) {
		t.Errorf("class table\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	want = []string{
		"endpoint-independent 100% 18/18 above (+30 points) meets",
		"hard × endpoint-independent 50% 6/12 below (-20 points) below (-40 points)",
		"hard × hard 0% 0/2 below (-70 points) below (-90 points)",
		"udp-blocked side 78% 14/18 above (+8 points) below (-12 points)",
		"all pairs 76% 38/50 within (+6 points) below (-14 points)",
	}
	if got := table("anchors"); !reflect.DeepEqual(got, want) {
		t.Errorf("anchors table\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, s := range []string{"Trautwein et al., 2025", "well north of 90 %", "First try: of the paths that went relayed → direct"} {
		if !strings.Contains(page, s) {
			t.Errorf("page lacks %q", s)
		}
	}
	// The same as text, for logs.
	var b strings.Builder
	if err := WriteClasses(&b, results.Classes(res.Paths)); err != nil {
		t.Fatal(err)
	}
	text := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(text) != 6 {
		t.Fatalf("text table of %d lines, want a header, 4 classes and all pairs:\n%s", len(text), b.String())
	}
	for i, w := range [][]string{
		1: {"endpoint-independent", "18/18 (100%)", "3/4", "120 ms / 180 ms / 180 ms", "0 / 18", "above (+30 points)", "meets"},
		2: {"hard × endpoint-independent", "11/12", "6/12 (50%)", "300 in 1 path", "below (-20 points)", "below (-40 points)"},
		5: {"all pairs", "49/50", "38/50 (76%)", "within (+6 points)", "below (-14 points)"},
	} {
		for _, s := range w {
			if !strings.Contains(text[i], s) {
				t.Errorf("text line %d lacks %q: %s", i, s, text[i])
			}
		}
	}
	t.Logf("\n%s", b.String())

	// Paths that are not a grid's: no class tables.
	res.Grid = nil
	if strings.Contains(render(t, res), `id="classes"`) {
		t.Error("a run without a grid has a class table")
	}
}

// stripTags is s without its HTML tags, entities decoded.
func stripTags(s string) string {
	var b strings.Builder
	in := false
	for _, r := range s {
		switch {
		case r == '<':
			in = true
			b.WriteByte(' ')
		case r == '>':
			in = false
		case !in:
			b.WriteRune(r)
		}
	}
	return html.UnescapeString(b.String())
}
