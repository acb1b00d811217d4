package results

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestClassOf(t *testing.T) {
	presets := []string{"public", "easy", "cgnat", "hard", "sequential", "udp-blocked"}
	want := map[[2]string]string{}
	count := map[string]int{}
	for _, a := range presets {
		for _, b := range presets {
			k := ClassOf(a, b)
			if r := ClassOf(b, a); r != k {
				t.Errorf("ClassOf(%s, %s) = %q but ClassOf(%s, %s) = %q", a, b, k, b, a, r)
			}
			want[[2]string{a, b}] = k
			count[k]++
		}
	}
	for pair, k := range map[[2]string]string{
		{"public", "public"}: ClassEndpointIndependent, {"easy", "cgnat"}: ClassEndpointIndependent,
		{"hard", "easy"}: ClassHardEI, {"public", "hard"}: ClassHardEI,
		{"hard", "hard"}:               ClassHardHard,
		{"sequential", "cgnat"}:        ClassSequentialEI,
		{"udp-blocked", "hard"}:        ClassUDPBlocked, // udp-blocked first
		{"udp-blocked", "public"}:      ClassUDPBlocked,
		{"udp-blocked", "udp-blocked"}: ClassUDPBlocked,
		{"hard", "sequential"}:         ClassOther,
		{"sequential", "sequential"}:   ClassOther,
		{"isolated", "easy"}:           ClassOther,
		{"", ""}:                       ClassOther,
	} {
		if got := ClassOf(pair[0], pair[1]); got != k {
			t.Errorf("ClassOf(%q, %q) = %q, want %q", pair[0], pair[1], got, k)
		}
	}
	// The 6 × 6 grid: 9 endpoint-independent, 6 hard × EI, 1 hard × hard,
	// 6 sequential × EI, 11 with a udp-blocked side, 3 others.
	wantCount := map[string]int{ClassEndpointIndependent: 9, ClassHardEI: 6, ClassHardHard: 1, ClassSequentialEI: 6, ClassUDPBlocked: 11, ClassOther: 3}
	if !reflect.DeepEqual(count, wantCount) {
		t.Errorf("classes of the 6 × 6 grid %v, want %v", count, wantCount)
	}
}

func TestClasses(t *testing.T) {
	relayedThenDirect := func(run int, c, p, transport string, ttd float64) Path {
		return Path{Run: run, ConsoleNAT: c, PeerNAT: p, OK: true, Initial: "relayed", Final: "direct", Transport: transport, TimeToDirectMS: ttd}
	}
	paths := []Path{
		// Endpoint-independent: two runs of two pairs, one at once, one
		// relayed, one upgraded over QUIC, one over TCP.
		{Run: 1, ConsoleNAT: "public", PeerNAT: "easy", OK: true, Initial: "direct", Final: "direct", Transport: "tcp"},
		{Run: 2, ConsoleNAT: "public", PeerNAT: "easy", OK: true, Initial: "relayed", Final: "relayed"},
		relayedThenDirect(1, "easy", "cgnat", "quic", 200),
		relayedThenDirect(2, "cgnat", "easy", "tcp", 300),
		// Hard × EI: one probed and direct, one probed and relayed, one
		// failed (never connected), one whose first connection is
		// missing its final (counts as its initial).
		{Run: 1, ConsoleNAT: "easy", PeerNAT: "hard", OK: true, Initial: "relayed", Final: "direct", Transport: "quic", TimeToDirectMS: 2500, ProbesSent: 300},
		{Run: 2, ConsoleNAT: "hard", PeerNAT: "cgnat", OK: true, Initial: "relayed", Final: "relayed", ProbesSent: 1024},
		{Run: 1, ConsoleNAT: "hard", PeerNAT: "public", Error: "no route"},
		{Run: 2, ConsoleNAT: "public", PeerNAT: "hard", OK: true, Initial: "direct", Transport: "tcp"},
		// Hard × hard: relayed.
		{Run: 1, ConsoleNAT: "hard", PeerNAT: "hard", OK: true, Initial: "relayed", Final: "relayed"},
		// Through a jumpoint: connected, not direct.
		{Run: 1, ConsoleNAT: "sequential", PeerNAT: "hard", OK: true, Initial: "jumpoint", Final: "jumpoint"},
	}
	// Ten upgraded paths in the udp-blocked class: 100, 200, … 1000 ms;
	// the punch attempt known for six, the first for four of them.
	for i := 1; i <= 10; i++ {
		p := relayedThenDirect(i, "udp-blocked", "easy", "tcp", float64(100*i))
		p.PunchAttempt = []int{0, 1, 1, 2, 1, 0, 3, 1, 0, 0}[i-1]
		paths = append(paths, p)
	}
	// An attempt on a path that did not start relayed counts nowhere.
	paths[0].PunchAttempt = 1
	got := Classes(paths)
	want := []Class{
		{Class: ClassEndpointIndependent, Paths: 4, Connected: 4, Direct: 3, AtOnce: 1, Upgraded: 2, TCP: 2, QUIC: 1,
			TimeToDirect: &Percentiles{N: 2, P50: 250, P90: 290, P99: 299}},
		{Class: ClassHardEI, Paths: 4, Connected: 3, Direct: 2, AtOnce: 1, Upgraded: 1, TCP: 1, QUIC: 1,
			TimeToDirect: &Percentiles{N: 1, P50: 2500, P90: 2500, P99: 2500}, Probed: 2, ProbesSent: 1324},
		{Class: ClassHardHard, Paths: 1, Connected: 1},
		{Class: ClassUDPBlocked, Paths: 10, Connected: 10, Direct: 10, Upgraded: 10, TCP: 10,
			TimeToDirect: &Percentiles{N: 10, P50: 550, P90: 910, P99: 991}, AttemptKnown: 6, FirstTry: 4},
		{Class: ClassOther, Paths: 1, Connected: 1},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d classes %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.TimeToDirect != nil && w.TimeToDirect != nil {
			for _, v := range []*float64{&g.TimeToDirect.P50, &g.TimeToDirect.P90, &g.TimeToDirect.P99} {
				*v = float64(int(*v*1000+0.5)) / 1000 // interpolation's rounding
			}
		}
		if !reflect.DeepEqual(g, w) {
			gj, _ := json.Marshal(g)
			wj, _ := json.Marshal(w)
			t.Errorf("class %d:\n got %s\nwant %s", i, gj, wj)
		}
	}
	if r := got[0].DirectRate(); r != 0.75 {
		t.Errorf("endpoint-independent direct rate %v, want 0.75", r)
	}
	if (Class{}).DirectRate() != 0 {
		t.Error("an empty class's rate is not 0")
	}
	if Classes(nil) != nil {
		t.Error("no paths, yet classes")
	}
}

// TestClassesJSON: a class without probes or upgrades leaves those fields
// out of results.json; the counts that are zero stay (a zero is a result).
func TestClassesJSON(t *testing.T) {
	b, err := json.Marshal(Classes([]Path{{ConsoleNAT: "hard", PeerNAT: "hard", OK: true, Initial: "relayed", Final: "relayed"}}))
	if err != nil {
		t.Fatal(err)
	}
	const want = `[{"class":"hard × hard","paths":1,"connected":1,"direct":0,"direct_at_once":0,"upgraded":0,"tcp":0,"quic":0}]`
	if string(b) != want {
		t.Errorf("JSON\n %s\nwant\n %s", b, want)
	}
}
