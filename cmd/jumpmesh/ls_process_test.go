package main

import (
	"bytes"
	"context"
	"encoding/json"
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
	if n := collections([]string{"GOGC=1"}, "ls", "--json"); n == 0 {
		t.Fatalf("ls with GOGC=1 ran no collection: GOGC not obeyed, or gctrace shows none")
	}
	for _, args := range [][]string{{"ls"}, {"ls", "--json"}, {"ls", "name:nothing"}} {
		if n := collections(nil, args...); n != 0 {
			t.Errorf("jumpmesh %v ran %d collections, want none", args, n)
		}
	}
	// Through the console's host, which allocates as whoami does.
	if n := collections([]string{LsDirectEnv + "=0"}, "ls"); n != 0 {
		t.Errorf("jumpmesh ls through the console's host ran %d collections, want none", n)
	}
}

// TestLsFallsBackToTheConsole: ls asks the coordinator on a connection of
// its own (console.Direct, TCP only); a home that knows the coordinator
// only by a QUIC address (nor a lane) gets its list through the console's
// host as before, the same list, and a bad query's error either way.
func TestLsFallsBackToTheConsole(t *testing.T) {
	dir, init, coord := newSite(t, "/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1")
	admin := filepath.Join(dir, "admin-home")
	ok(t, admin, nil, "login", coord.addr, init.Invite)
	direct := jm(t, admin, "ls", "--json")
	if direct.code != 0 || direct.stdout != "[]\n" {
		t.Fatalf("ls: exit %d\n%s\n%s", direct.code, direct.stdout, direct.stderr)
	}
	failCode(t, admin, "invalid_argument", "ls", "status:sleeping")

	path := filepath.Join(admin, "console.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	var quic []any
	for _, a := range cfg["coordinator"].([]any) {
		if strings.Contains(a.(string), "/quic-v1/") {
			quic = append(quic, a)
		}
	}
	if len(quic) == 0 {
		t.Fatalf("no QUIC coordinator address in %s", raw)
	}
	cfg["coordinator"] = quic
	delete(cfg, "lane")
	if raw, err = json.Marshal(cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, env := range []string{"", "0"} {
		t.Setenv(LsDirectEnv, env)
		r := jm(t, admin, "ls", "--json")
		if r.code != 0 || r.stdout != direct.stdout {
			t.Fatalf("%s=%q, over QUIC: exit %d\n%s\n%s", LsDirectEnv, env, r.code, r.stdout, r.stderr)
		}
		failCode(t, admin, "invalid_argument", "ls", "status:sleeping")
	}
}
