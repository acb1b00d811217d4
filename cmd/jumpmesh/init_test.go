package main

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// ownInitBudget is what one of jumpmesh's own packages may allocate in its
// package initialisation (GODEBUG=inittrace=1), which every jumpmesh
// process runs, `jump` included: its package variables and init funcs
// (regular expressions, tables). Work only some commands need — parsed
// templates, registries, regular expressions — is done on first use
// instead (sim/report parsed its HTML templates at init: 250 kB and 1.2 ms
// of every jump's start; coordinator, sim/netlab and sim/scenario compiled
// six regular expressions: 0.15 ms). The largest now is coordinator's,
// 7 kB (2026-12-03).
const ownInitBudget = 16 << 10

// TestOwnPackageInitsAreLight: no package of ours but mesh/pb, whose init
// registers the protobuf descriptors, allocates more than ownInitBudget
// at process start (issue 17: the process start is most of a jump through
// the agent).
func TestOwnPackageInitsAreLight(t *testing.T) {
	cmd := exec.Command(binary, "--version")
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("jumpmesh --version: %v\n%s", err, out)
	}
	seen := 0
	for _, line := range strings.Split(string(out), "\n") {
		// init PKG @T ms, C ms clock, B bytes, A allocs
		f := strings.Fields(line)
		if len(f) < 11 || f[0] != "init" || f[8] != "bytes," {
			continue
		}
		pkg := f[1]
		if pkg != "main" && !strings.HasPrefix(pkg, "github.com/jumpmesh/jumpmesh/") {
			continue
		}
		seen++
		bytes, err := strconv.Atoi(f[7])
		if err != nil {
			t.Fatalf("inittrace line %q: %v", line, err)
		}
		if pkg != "github.com/jumpmesh/jumpmesh/mesh/pb" && bytes > ownInitBudget {
			t.Errorf("%s allocates %d bytes at init (budget %d): %s", pkg, bytes, ownInitBudget, line)
		}
	}
	if seen < 5 {
		t.Fatalf("%d of our packages in the init trace:\n%s", seen, out)
	}
}

// processInitBudget is what all package initialisation of a jumpmesh
// process may allocate (GODEBUG=inittrace=1, every package's bytes
// summed): 1.77 MB on 2026-12-03 (Go 1.26, 384 packages), 2.01 MB while
// blackfriday was linked. Most of it is third-party (protobuf descriptors,
// regular expressions, metric registries), paid by every jump before it
// starts (issue 17): a dependency that brings a heavy init back, or a new
// one, shows here first.
const processInitBudget = 1900 << 10

// unwantedInits are packages that no jumpmesh process initialises: they
// were linked for code jumpmesh never runs, and left out on purpose.
var unwantedInits = map[string]string{
	// urfave/cli's App.ToMan, through go-md2man (replaced by
	// third_party/go-md2man in go.mod): 70 regular expressions at init.
	"github.com/russross/blackfriday/v2": "urfave/cli's man-page renderer; see third_party/go-md2man",
}

// TestProcessInitBudget: the package inits of a whole jumpmesh process
// stay within processInitBudget, and none of unwantedInits runs.
func TestProcessInitBudget(t *testing.T) {
	cmd := exec.Command(binary, "--version")
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("jumpmesh --version: %v\n%s", err, out)
	}
	total, pkgs := 0, 0
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 11 || f[0] != "init" || f[8] != "bytes," {
			continue
		}
		pkgs++
		bytes, err := strconv.Atoi(f[7])
		if err != nil {
			t.Fatalf("inittrace line %q: %v", line, err)
		}
		total += bytes
		if why, ok := unwantedInits[f[1]]; ok {
			t.Errorf("%s is initialised again (%s): %s", f[1], why, line)
		}
	}
	if pkgs < 100 {
		t.Fatalf("%d packages in the init trace:\n%s", pkgs, out)
	}
	t.Logf("%d packages initialised, %d bytes allocated", pkgs, total)
	if total > processInitBudget {
		t.Errorf("the package inits of a jumpmesh process allocate %d bytes (budget %d): find the package that grew with GODEBUG=inittrace=1 jumpmesh --version", total, processInitBudget)
	}
}
