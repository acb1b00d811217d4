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
// templates, registries — is done on first use instead (sim/report parsed
// its HTML templates at init: 250 kB and 1.2 ms of every jump's start).
const ownInitBudget = 32 << 10

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
