package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLsCollectsNothing: `jumpmesh ls` makes one call and exits, so its
// process runs no garbage collection (oneCallGC) unless GOGC says
// otherwise; a command that keeps the collector (whoami) shows that one
// would be seen.
func TestLsCollectsNothing(t *testing.T) {
	dir, init, coord := newSite(t)
	admin := filepath.Join(dir, "admin-home")
	ok(t, admin, nil, "login", coord.addr, init.Invite)
	collections := func(env []string, args ...string) int {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, binary, args...)
		cmd.Env = append(os.Environ(), append(env, "JUMPMESH_HOME="+admin, "GODEBUG=gctrace=1")...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("jumpmesh %v: %v\n%s", args, err, stderr.String())
		}
		n := 0
		for _, line := range strings.Split(stderr.String(), "\n") {
			if strings.HasPrefix(line, "gc ") {
				n++
			}
		}
		return n
	}
	if n := collections(nil, "whoami"); n == 0 {
		t.Fatalf("whoami ran no collection: gctrace shows none, the test below could not fail")
	}
	if n := collections([]string{"GOGC=100"}, "ls", "--json"); n == 0 {
		t.Fatalf("ls with GOGC=100 ran no collection: GOGC not obeyed, or gctrace shows none")
	}
	for _, args := range [][]string{{"ls"}, {"ls", "--json"}, {"ls", "name:nothing"}} {
		if n := collections(nil, args...); n != 0 {
			t.Errorf("jumpmesh %v ran %d collections, want none", args, n)
		}
	}
}
