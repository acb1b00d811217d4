package scenario

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHAScenarioParses: the shipped ha scenario has three etcd hosts and
// three coordinators on the public network and kills one of each.
func TestHAScenarioParses(t *testing.T) {
	sc, err := Load("ha")
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, h := range sc.Hosts {
		count[h.Role]++
		if (h.Role == RoleEtcd || h.Role == RoleCoordinator) && h.Network != "dc" {
			t.Errorf("%s is on %s, not the public network", h.Name, h.Network)
		}
	}
	if count[RoleEtcd] != 3 || count[RoleCoordinator] != 3 {
		t.Errorf("roles %v, want 3 etcd and 3 coordinators", count)
	}
	var names []string
	for _, s := range sc.Steps {
		names = append(names, s.Name())
	}
	all := strings.Join(names, "|")
	for _, want := range []string{"kill coord-1", "kill etcd-2", "writes acked", "expect-kept acked"} {
		if !strings.Contains(all, want) {
			t.Errorf("steps lack %q: %s", want, all)
		}
	}
}

func TestParseRejectsHASteps(t *testing.T) {
	head := "name: x\nnetworks: [{name: n, nat: public}]\nhosts:\n" +
		"  - {name: c, network: n, role: coordinator}\n  - {name: c2, network: n, role: coordinator}\n" +
		"  - {name: e, network: n, role: etcd}\n  - {name: p, network: n, role: peer}\n  - {name: l, network: n, role: console}\n"
	for _, tc := range []struct{ yaml, want string }{
		{strings.Replace(head, "role: etcd", "role: plain", 1) + "steps: []", "several with etcd hosts"},
		{strings.NewReplacer("role: coordinator", "role: plain").Replace(head) + "steps: []", "etcd hosts need a coordinator host"},
		{head + "steps: [writes w]", "comes before init"},
		{head + "steps: [init, writes w]", `writes "w" are never checked`},
		{head + "steps: [init, expect-kept w]", `no writes "w" started before it`},
		{head + "steps: [init, writes w, writes w]", "runs already"},
		{head + "steps: [init, kill l]", "l is a console"},
	} {
		_, err := Parse([]byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err %v, want %q", tc.yaml, err, tc.want)
		}
	}
	sc, err := Parse([]byte(head + "steps: [init, writes w, kill e, start e, kill c, expect-kept w]"))
	if err != nil {
		t.Fatal(err)
	}
	// Without a member binary a scenario with etcd hosts cannot run.
	t.Setenv("PATH", t.TempDir())
	if _, err := findEtcdBinary(sc, ""); err == nil || !strings.Contains(err.Error(), "./sim/labetcd") {
		t.Errorf("no binary: %v", err)
	}
	if _, err := findEtcdBinary(sc, filepath.Join(t.TempDir(), "none")); err == nil {
		t.Error("a missing binary was accepted")
	}
	exe := filepath.Join(t.TempDir(), EtcdBinaryName)
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", filepath.Dir(exe))
	if got, err := findEtcdBinary(sc, ""); err != nil || got != exe {
		t.Errorf("in PATH: %q %v", got, err)
	}
}

// TestHA runs the shipped ha scenario: three coordinators on a
// three-member etcd cluster in the lab, peers behind NATs; one
// coordinator and then one etcd member are killed with SIGKILL; the peers
// come back online, jumps work (and a session open across both kills
// finishes), and every write a coordinator acknowledged is there.
func TestHA(t *testing.T) {
	t.Parallel() // beside the other lab tests (run_test.go)
	_, res, _ := runShipped(t, "ha", 4*time.Minute)
	for _, s := range res.Steps {
		if strings.HasPrefix(s.Name, "expect-kept") {
			t.Logf("%s: %s", s.Name, s.Output)
			if !strings.Contains(s.Output, " 0 lost") {
				t.Errorf("%s: %s", s.Name, s.Output)
			}
		}
	}
}
