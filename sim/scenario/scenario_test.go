package scenario

import (
	"bufio"
	byteorder "encoding/binary"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestShippedScenariosParse(t *testing.T) {
	if len(Shipped()) == 0 {
		t.Fatal("no shipped scenarios")
	}
	for _, name := range Shipped() {
		sc, err := Load(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if sc.Name != name {
			t.Errorf("%s.yaml is named %q", name, sc.Name)
		}
	}
	sc, _ := Load("quickstart")
	got := []string{}
	for _, s := range sc.Steps {
		got = append(got, s.Name())
	}
	want := "init|console settings set stats-interval=5s|relay relay-1|install web-01|expect-status web-01 online within 30s|" +
		"expect-relay web-01 within 30s|exec web-01 -- cat /proc/net/fib_trie|console ping web-01 -c 3 -i 200ms --wait-direct 10s|" +
		"console stats paths --json|stop web-01|expect-status web-01 offline within 30s"
	if strings.Join(got, "|") != want {
		t.Fatalf("steps:\n%s\nwant\n%s", strings.Join(got, "|"), want)
	}
	if sc.Steps[6].ExpectStdout != "${web-01.addr}" || sc.Steps[6].ExpectPath != "direct" || sc.Steps[4].Within != 30*time.Second {
		t.Fatalf("options: %+v %+v", sc.Steps[6], sc.Steps[4])
	}
	topo, err := sc.Topology()
	if err != nil || topo.Networks[1].Uplink.Latency != 10*time.Millisecond || topo.Hosts[3].Link.Latency != 2*time.Millisecond {
		t.Fatalf("topology: %+v %v", topo, err)
	}
}

func TestParseRejects(t *testing.T) {
	head := "name: x\nnetworks: [{name: n, nat: public}]\nhosts:\n" +
		"  - {name: c, network: n, role: coordinator}\n  - {name: p, network: n, role: peer}\n  - {name: l, network: n, role: console}\n"
	for _, tc := range []struct{ yaml, want string }{
		{head + "steps: [fly p]", `unknown step "fly"`},
		{head + "steps: [init, install]", "wrong number of arguments"},
		{head + "steps: [init, 'exec p hostname -a']", "exec NAME -- COMMAND"},
		{head + "steps: [install p]", "comes before init"},
		{head + "steps: [init, install c]", "c is a coordinator, not a peer"},
		{head + "steps: [init, 'expect-online p within soon']", "not a duration"},
		{head + "steps: [init, {exec: p -- true, expect-sdtout: x}]", "unknown step option"},
		{head + "steps: [partition nowhere]", `no host or network "nowhere"`},
		{head + "steps: [init, expect-splices p 1]", "p is a peer, not a relay"},
		{strings.Replace(head, "role: peer", "role: relay", 1) + "steps: [init, expect-splices p 0]", "expect-splices RELAY N"},
		{head + "bogus: 1\nsteps: []", "field bogus not found"},
		{strings.Replace(head, "role: peer", "role: wizard", 1) + "steps: []", `unknown role "wizard"`},
		{strings.Replace(head, "nat: public", "nat: weird", 1) + "steps: []", "weird"},
	} {
		_, err := Parse([]byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err %v, want %q", tc.yaml, err, tc.want)
		}
	}
	if _, err := Load("no-such-scenario"); err == nil || !strings.Contains(err.Error(), "quickstart") {
		t.Errorf("unknown name: %v", err)
	}
}

// TestShippedGridIsSimGrid: the shipped nat-grid scenario is what
// `jumpmesh sim grid` runs with its defaults.
func TestShippedGridIsSimGrid(t *testing.T) {
	shipped, err := Load("nat-grid")
	if err != nil {
		t.Fatal(err)
	}
	built, err := Grid(GridOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := shipped.Topology()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := built.Topology()
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("topologies differ:\nshipped %+v\nbuilt   %+v", a, b)
	}
	steps := func(sc *Scenario) (out []string) {
		for _, s := range sc.Steps {
			out = append(out, fmt.Sprintf("%s runs=%d wait=%v", s.Name(), s.Runs, s.WaitDirect))
		}
		return out
	}
	if x, y := steps(shipped), steps(built); !slices.Equal(x, y) {
		t.Fatalf("steps differ:\nshipped %v\nbuilt   %v", x, y)
	}
	for i := range shipped.Hosts {
		if shipped.Hosts[i].Role != built.Hosts[i].Role {
			t.Fatalf("host %s: role %s, built %s", shipped.Hosts[i].Name, shipped.Hosts[i].Role, built.Hosts[i].Role)
		}
	}
}

func TestSplitWords(t *testing.T) {
	for in, want := range map[string][]string{
		"exec web-01 -- uname -a":                  {"exec", "web-01", "--", "uname", "-a"},
		"exec w -- sh -c 'sleep 4; echo survived'": {"exec", "w", "--", "sh", "-c", "sleep 4; echo survived"},
		`console ping "web 01" x''y ''`:            {"console", "ping", "web 01", "xy", ""},
		"  spaced   out  ":                         {"spaced", "out"},
		`a "it's" 'say "hi"'`:                      {"a", "it's", `say "hi"`},
	} {
		got, err := splitWords(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%q: got %q %v, want %q", in, got, err, want)
		}
	}
	if _, err := splitWords("exec w -- sh -c 'oops"); err == nil {
		t.Error("an unterminated quote was accepted")
	}
}

// TestJumpointScenarioParses: the shipped jumpoint scenario puts the
// jumpoints on the plant and the office (in that order), behind the
// office's NAT with no port forward, and names both jumpoints in the
// peers' keys.
func TestJumpointScenarioParses(t *testing.T) {
	sc, err := Load("jumpoint")
	if err != nil {
		t.Fatal(err)
	}
	topo, err := sc.Topology()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range topo.Hosts {
		switch h.Name {
		case "j-1", "j-2":
			if h.Network != "plant" || len(h.More) != 1 || h.More[0].Network != "office" {
				t.Errorf("%s: network %s, more %+v", h.Name, h.Network, h.More)
			}
		case "peer-1", "peer-2", "web":
			if h.Network != "plant" || len(h.More) != 0 {
				t.Errorf("%s: %+v", h.Name, h)
			}
		}
	}
	for _, n := range topo.Networks {
		if n.Name == "plant" && n.NAT != "isolated" {
			t.Errorf("plant is %s", n.NAT)
		}
		if n.Name == "office" && (n.NAT != "easy" || len(n.Forwards) != 0) {
			// The jumpoints are reached through the site's relay, not a port forward.
			t.Errorf("office: %s, forwards %+v", n.NAT, n.Forwards)
		}
	}
	for _, h := range sc.Hosts {
		if h.Role == RolePeer && strings.Join(h.Installer, " ") != "--jumpoint j-1 --jumpoint j-2" {
			t.Errorf("%s's key: %v", h.Name, h.Installer)
		}
	}
	var names []string
	for _, s := range sc.Steps {
		names = append(names, s.Name())
	}
	all := strings.Join(names, "|")
	for i, st := range sc.Steps {
		if st.ExpectError != "" && (st.Action != "fetch" || st.Args[0] != "j-1") {
			t.Errorf("step %d %s: expect-error %q", i, st.Name(), st.ExpectError)
		}
	}
	for _, want := range []string{"jumpoint j-1", "expect-relay j-2 within 30s", "capture j-1", "fetch j-1 ${web.addr}:8080", "fetch j-1 ${web.addr}:22", "cp peer-2 'a file with ${marker}'", "kill j-1",
		"expect-jumpoint j-2 peers 2 within 30s", "expect-capture j-1 lacks ${marker}", "expect-capture web has 'hello from web'"} {
		if !strings.Contains(all, want) {
			t.Errorf("no step %q in %s", want, all)
		}
	}
}

func TestParseRejectsJumpointSteps(t *testing.T) {
	head := "name: x\nnetworks: [{name: n, nat: easy}, {name: p, nat: isolated}]\nhosts:\n" +
		"  - {name: c, network: n, role: coordinator}\n  - {name: p1, network: p, role: peer}\n  - {name: l, network: n, role: console}\n" +
		"  - {name: j, networks: [p, n], role: jumpoint}\n"
	for _, tc := range []struct{ yaml, want string }{
		{head + "steps: [jumpoint j]", "comes before init"},
		{head + "steps: [init, jumpoint p1]", "p1 is a peer, not a jumpoint"},
		{head + "steps: [init, 'expect-jumpoint j peers many']", "expect-jumpoint NAME peers N"},
		{head + "steps: [init, 'expect-jumpoint j tunnels 2']", "expect-jumpoint NAME peers N"},
		{head + "steps: [init, 'expect-capture j holds x']", "has|lacks"},
		{head + "steps: [init, \"expect-capture j lacks ''\"]", "empty text"},
		{head + "steps: [cp p1 hello]", "comes before init"},
		{head + "steps: [init, cp j hello]", "j is a jumpoint, not a peer"},
		{head + "steps: [capture nobody]", `no host "nobody"`},
		{head + "steps: [init, {exec: p1 -- true, expect-path: teleported}]", "direct, relayed or jumpoint"},
		{head + "steps: [init, {exec: p1 -- true, expect-error: nope}]", "expect-error is for fetch"},
		{head + "steps: [init, fetch c 1.2.3.4:80]", "c is a coordinator, not a peer or jumpoint"},
		{head + "steps: [init, expect-relay l]", "l is a console, not a peer or jumpoint"},
		{strings.Replace(head, "networks: [p, n]", "network: n, networks: [p]", 1) + "steps: []", "network or networks"},
		{strings.Replace(head, "networks: [p, n]", "networks: [p, p]", 1) + "steps: []", "twice"},
		{strings.Replace(head, "{name: n, nat: easy}", "{name: n, nat: easy, forwards: [{port: 1, host: p1}]}", 1) + "steps: []", "not on it"},
	} {
		_, err := Parse([]byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

// TestFramesHolding: the pcap reader counts records and finds text only
// inside a frame.
func TestFramesHolding(t *testing.T) {
	file := make([]byte, 24)
	frame := func(payload string) {
		rec := make([]byte, 16)
		byteorder.LittleEndian.PutUint32(rec[8:], uint32(len(payload)))
		byteorder.LittleEndian.PutUint32(rec[12:], uint32(len(payload)))
		file = append(append(file, rec...), payload...)
	}
	frame("xxSECRETxx")
	frame("SEC")
	frame("RET and more")
	frame("nothing")
	if f, m := framesHolding(file, []byte("SECRET")); f != 4 || m != 1 {
		t.Fatalf("frames %d, matches %d; want 4, 1", f, m)
	}
	if f, m := framesHolding(file[:len(file)-3], []byte("nothing")); f != 4 || m != 0 {
		t.Fatalf("truncated: frames %d, matches %d; want 4, 0", f, m)
	}
}

// TestDirectAttempt reads the attempt of a peer's "direct connection" to one
// console from its log: not another console's, not one logged before the
// ping started, not a line that is not about a direct connection.
func TestDirectAttempt(t *testing.T) {
	const log = `time=2026-12-02T21:25:54.118Z level=INFO msg="direct connection" peer=12D3KooWA by="hole punch" attempt=1 relayed_rtt=49ms took=433ms
time=2026-12-02T21:26:20.000Z level=INFO msg="hole punching gave up; the session stays relayed" peer=12D3KooWB attempts=6
time=2026-12-02T21:26:21.000Z level=INFO msg="direct connection" peer=12D3KooWAB by="hole punch" attempt=5 relayed_rtt=49ms took=433ms
time=2026-12-02T21:26:23.641Z level=INFO msg="direct connection" peer=12D3KooWA by="hole punch" attempt=3 relayed_rtt=59ms took=371ms
time=2026-12-02T21:26:24.641Z level=INFO msg="direct connection" peer=12D3KooWA by="hole punch" attempt=4 relayed_rtt=59ms took=371ms
`
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct {
		remote string
		since  time.Time
		want   int
	}{
		{"12D3KooWA", at("2026-12-02T21:25:50Z"), 1},
		{"12D3KooWA", at("2026-12-02T21:26:00Z"), 3}, // the first after since
		{"12D3KooWA", at("2026-12-02T21:26:23.641Z"), 3},
		{"12D3KooWA", at("2026-12-02T21:26:30Z"), 0},
		{"12D3KooWB", at("2026-12-02T21:25:00Z"), 0}, // gave up: no direct connection
		{"12D3KooWAB", at("2026-12-02T21:25:00Z"), 5},
		{"12D3KooW", at("2026-12-02T21:25:00Z"), 0}, // a prefix of an ID is not the ID
	} {
		if got := directAttempt(bufio.NewScanner(strings.NewReader(log)), c.remote, c.since); got != c.want {
			t.Errorf("directAttempt(%s, %v) = %d, want %d", c.remote, c.since, got, c.want)
		}
	}
}
