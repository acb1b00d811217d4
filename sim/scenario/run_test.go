package scenario

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/sim/netlab"
	"github.com/jumpmesh/jumpmesh/sim/netlab/labtest"
)

var binary string

func TestMain(m *testing.M) {
	os.Exit(func() int {
		if os.Geteuid() != 0 || netlab.Available() != nil {
			return labtest.Main(m) // the lab tests skip themselves
		}
		dir, err := os.MkdirTemp("", "jumpmesh-sim-bin")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		binary = filepath.Join(dir, "jumpmesh")
		out, err := exec.Command("go", "build", "-o", binary, "github.com/jumpmesh/jumpmesh/cmd/jumpmesh").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "building jumpmesh: %v\n%s", err, out)
			return 1
		}
		return labtest.Main(m)
	}())
}

// TestQuickstart runs the shipped quickstart scenario with real jumpmesh
// processes: every step passes, results.json says so, and the run leaves no
// namespace, process or nft table behind.
func TestQuickstart(t *testing.T) {
	labtest.Skip(t)
	sc, err := Load("quickstart")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	t0 := time.Now()
	res, err := Run(ctx, sc, Options{Binary: binary, OutDir: out, Progress: func(s StepResult) {
		t.Logf("%-45s ok=%v %6.0f ms %s", s.Name, s.OK, s.DurationMS, s.Error)
	}})
	t.Logf("run took %v", time.Since(t0))
	if err != nil {
		t.Fatal(err)
	}
	dump := func() {
		for _, h := range []string{"coordinator/coordinator.log", "laptop/commands.log", "web-01/commands.log", "web-01/jumpmesh/logs/peer.log"} {
			b, _ := os.ReadFile(filepath.Join(out, "hosts", h))
			t.Logf("--- %s\n%s", h, b)
		}
	}
	if !res.OK || len(res.Steps) != len(sc.Steps) {
		dump()
		t.Fatalf("run not ok: %s", res.Error)
	}
	var back Results
	raw, err := os.ReadFile(filepath.Join(out, ResultsFile))
	if err != nil || json.Unmarshal(raw, &back) != nil || !back.OK || len(back.Steps) != len(sc.Steps) {
		t.Fatalf("results.json: %v\n%s", err, raw)
	}
	for _, s := range back.Steps {
		if !s.OK || s.DurationMS <= 0 || s.Start.IsZero() {
			t.Errorf("step %+v", s)
		}
	}
	// The fib_trie exec ran on web-01: its output holds web-01's address.
	web := ""
	for _, h := range back.Hosts {
		if h.Name == "web-01" {
			web = h.Addr
		}
	}
	if exec := back.Steps[5]; web == "" || !strings.Contains(exec.Output, web) {
		t.Errorf("exec output lacks web-01's address %q: %q", web, exec.Output)
	}
	if left, err := netlab.Leftovers(res.Lab); err != nil || len(left) > 0 {
		t.Fatalf("left behind: %v %v", left, err)
	}
}

// TestTwoHomes: the console and the peer behind two different NATs reach
// each other through the site's relay (the path is checked by the
// scenario's expect-path), and the coordinator counts the session relayed.
func TestTwoHomes(t *testing.T) {
	labtest.Skip(t)
	sc, err := Load("two-homes")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := Run(ctx, sc, Options{Binary: binary, OutDir: out, Progress: func(s StepResult) {
		t.Logf("%-45s ok=%v %6.0f ms %s", s.Name, s.OK, s.DurationMS, s.Error)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK {
		for _, h := range []string{"coordinator/coordinator.log", "relay-1/relay.log", "laptop/commands.log", "web-01/jumpmesh/logs/peer.log"} {
			b, _ := os.ReadFile(filepath.Join(out, "hosts", h))
			t.Logf("--- %s\n%s", h, b)
		}
		t.Fatalf("run not ok: %s", res.Error)
	}
}
