package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// parties are the top-level directories of the parties of a site. DESIGN.md:
// parties never import each other; what they share is under mesh/ (the
// member client, mesh/member, for what every site member needs to talk to
// the coordinator).
var parties = []string{"coordinator", "peer", "relay", "console", "jumpoint"}

// TestNoPartyImportsAnother lists the dependencies (test files excluded, as
// go list -deps does) of every package under each party's directory, its
// test helpers such as coordinator/coordinatortest included, and fails on
// any package of another party among them.
func TestNoPartyImportsAnother(t *testing.T) {
	root := filepath.Join("..", "..")
	const module = "github.com/jumpmesh/jumpmesh/"
	var patterns []string
	for _, p := range parties {
		if _, err := os.Stat(filepath.Join(root, p)); err == nil {
			patterns = append(patterns, "./"+p+"/...")
		}
	}
	if len(patterns) < 4 {
		t.Fatalf("found only %v of the parties %v", patterns, parties)
	}
	cmd := exec.Command("go", append([]string{"list", "-f", "{{.ImportPath}} {{join .Deps \" \"}}"}, patterns...)...)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderrOf(err))
	}
	partyOf := func(pkg string) string {
		rest, ok := strings.CutPrefix(pkg, module)
		if !ok {
			return ""
		}
		top, _, _ := strings.Cut(rest, "/")
		for _, p := range parties {
			if top == p {
				return p
			}
		}
		return ""
	}
	checked := 0
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, own := fields[0], partyOf(fields[0])
		if own == "" {
			t.Fatalf("go list named %s, outside the parties", pkg)
		}
		checked++
		for _, dep := range fields[1:] {
			if other := partyOf(dep); other != "" && other != own {
				t.Errorf("%s (party %s) imports %s (party %s): parties never import each other; move what both need under mesh/", pkg, own, dep, other)
			}
		}
	}
	if checked == 0 {
		t.Fatal("go list listed no package")
	}
}

// stderrOf is the standard error an exec.ExitError carries.
func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
