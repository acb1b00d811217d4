package scenario

import (
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
