package report

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const hostile = `<script>alert("x")</script>`

// synthetic is a failed run: one ok step, one failed, one skipped.
func synthetic() Results {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	return Results{
		Scenario: "demo", Lab: "jmlab-test-", Started: t0, DurationMS: 3500,
		Error: "step 2 (exec web-01 -- hostname) failed",
		Networks: []Network{
			{Name: "dc", NAT: "public"},
			{Name: "home", NAT: "easy", Subnet: "192.168.50.0/24", Public: "203.0.113.10"},
		},
		Hosts: []Host{
			{Name: "coordinator", Network: "dc", Role: "coordinator", Addr: "198.51.100.10"},
			{Name: "web-01", Network: "home", Role: "peer", Addr: "192.168.50.10", Public: "203.0.113.10"},
			{Name: "laptop", Network: "home", Role: "console", Addr: "192.168.50.11", Public: "203.0.113.10"},
		},
		Steps: []Step{
			{Index: 1, Name: "init", Start: t0.Add(10 * time.Millisecond), DurationMS: 1000, OK: true, Output: "coordinator ready\nlogged in"},
			{Index: 2, Name: "exec web-01 -- " + hostile, Start: t0.Add(1010 * time.Millisecond), DurationMS: 2000,
				Error: "exit 1, want 0: " + hostile, Output: "before\n" + hostile + "\nafter"},
			{Index: 3, Name: "stop web-01", Start: t0.Add(3010 * time.Millisecond), Skipped: true},
		},
	}
}

func render(t *testing.T, res Results) string {
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
	page = render(t, Results{Scenario: "broken", Error: "netlab: needs root"})
	wellFormed(t, page)
	if strings.Contains(page, "<svg") || !strings.Contains(page, "netlab: needs root") {
		t.Error("an empty run renders badly")
	}
}

func TestFromResultsFile(t *testing.T) {
	dir := t.TempDir()
	b, err := json.Marshal(synthetic())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "results.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := FromResultsFile(path); err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(filepath.Join(dir, File))
	if err != nil {
		t.Fatal(err)
	}
	wellFormed(t, string(page))
	if len(bars(t, string(page))) != 3 {
		t.Error("report.html from results.json lacks the bars")
	}
	// Self-contained: nothing is fetched.
	for _, s := range []string{"http://", "https://", "<link", "src="} {
		if strings.Contains(strings.ReplaceAll(string(page), `xmlns="http://www.w3.org/2000/svg"`, ""), s) {
			t.Errorf("page refers to something outside it: %q", s)
		}
	}
	if err := FromResultsFile(filepath.Join(dir, "missing.json")); err == nil {
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
