package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLIReferenceIsCurrent fails when docs/cli.md is not what the command
// tree generates now: a command, flag, default or error code changed
// without `make docs`.
func TestCLIReferenceIsCurrent(t *testing.T) {
	want := cliReference(newApp(io.Discard, io.Discard))
	got, err := os.ReadFile(filepath.Join("..", "..", cliReferencePath))
	if err != nil {
		t.Fatalf("docs/cli.md is stale: run make docs (%v)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("docs/cli.md is stale: run make docs (%s)", firstDifference(got, want))
	}
}

// TestCLIReferenceCoversEveryCommand: every visible command has a section,
// and the hidden docs command is not in it.
func TestCLIReferenceCoversEveryCommand(t *testing.T) {
	ref := string(cliReference(newApp(io.Discard, io.Discard)))
	for _, h := range []string{"## jumpmesh jump\n", "### jumpmesh coordinator init\n", "### jumpmesh sim scale\n", "## Error catalog\n", "| `--wait-direct` | `1s` |"} {
		if !strings.Contains(ref, h) {
			t.Errorf("reference lacks %q", h)
		}
	}
	if strings.Contains(ref, "jumpmesh docs\n") {
		t.Error("the hidden docs command is in the reference")
	}
}

func firstDifference(got, want []byte) string {
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d is %q, the code gives %q", i+1, gl, wl)
		}
	}
	return "same lines, different bytes"
}
