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
	seen := 0
	for _, in := range initTrace(t) {
		if in.pkg != "main" && !strings.HasPrefix(in.pkg, "github.com/jumpmesh/jumpmesh/") {
			continue
		}
		seen++
		if in.pkg != "github.com/jumpmesh/jumpmesh/mesh/pb" && in.bytes > ownInitBudget {
			t.Errorf("%s allocates %d bytes at init (budget %d): %s", in.pkg, in.bytes, ownInitBudget, in.line)
		}
	}
	if seen < 5 {
		t.Fatalf("%d of our packages in the init trace", seen)
	}
}

// packageInit is one line of GODEBUG=inittrace=1: a package's
// initialisation and what it allocated.
type packageInit struct {
	pkg   string
	bytes int
	line  string
}

// initTrace runs jumpmesh --version with GODEBUG=inittrace=1 and returns
// the packages it initialised, in order.
func initTrace(t *testing.T) []packageInit {
	t.Helper()
	cmd := exec.Command(binary, "--version")
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("jumpmesh --version: %v\n%s", err, out)
	}
	var inits []packageInit
	for _, line := range strings.Split(string(out), "\n") {
		// init PKG @T ms, C ms clock, B bytes, A allocs
		f := strings.Fields(line)
		if len(f) < 11 || f[0] != "init" || f[8] != "bytes," {
			continue
		}
		bytes, err := strconv.Atoi(f[7])
		if err != nil {
			t.Fatalf("inittrace line %q: %v", line, err)
		}
		inits = append(inits, packageInit{pkg: f[1], bytes: bytes, line: line})
	}
	return inits
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
	// urfave/cli's App.ToMan, through go-md2man: 70 regular expressions
	// at init; left out by the build tag urfave_cli_no_docs, which make
	// and the test binary's build set (Makefile).
	"github.com/russross/blackfriday/v2": "urfave/cli's man-page renderer; build with -tags urfave_cli_no_docs (Makefile)",
}

// TestProcessInitBudget: the package inits of a whole jumpmesh process
// stay within processInitBudget, and none of unwantedInits runs.
func TestProcessInitBudget(t *testing.T) {
	inits := initTrace(t)
	total := 0
	for _, in := range inits {
		total += in.bytes
		if why, ok := unwantedInits[in.pkg]; ok {
			t.Errorf("%s is initialised again (%s): %s", in.pkg, why, in.line)
		}
	}
	if len(inits) < 100 {
		t.Fatalf("%d packages in the init trace", len(inits))
	}
	t.Logf("%d packages initialised, %d bytes allocated", len(inits), total)
	if total > processInitBudget {
		t.Errorf("the package inits of a jumpmesh process allocate %d bytes (budget %d): find the package that grew with GODEBUG=inittrace=1 jumpmesh --version", total, processInitBudget)
	}
}
