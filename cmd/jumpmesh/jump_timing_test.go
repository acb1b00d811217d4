package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// TestJumpTimingNamesEveryPhase: jump --timing prints each phase of a jump
// on stderr (the table BenchmarkJumpTrueVsSSH reads), and nothing on
// stdout that the command did not print.
func TestJumpTimingNamesEveryPhase(t *testing.T) {
	s := newJumpSite(t)
	r := jm(t, s.admin, "jump", "web-01", "--timing", "--", "echo", "hi")
	if r.code != 0 || r.stdout != "hi\n" {
		t.Fatalf("jump --timing: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	phases := parseTiming(r.stderr)
	for _, want := range []string{"process start to jump (exec, Go runtime, init, flags)", "key load", "host start (libp2p, listeners)",
		"coordinator dial (transport, security, muxer)", "grant request", "peer dial (direct)",
		"channel open (grant checked by the peer)", "exec (command run until its exit status)", "total"} {
		if _, ok := phases[want]; !ok {
			t.Errorf("no phase %q in\n%s", want, r.stderr)
		}
	}
	if total := phases["total"]; total <= 0 || phases["grant request"] <= 0 || phases["grant request"] > total {
		t.Errorf("phases do not add up: %v", phases)
	}
	if r := jm(t, s.admin, "jump", "web-01", "--", "true"); strings.Contains(r.stderr, "timing") {
		t.Errorf("timing without --timing: %q", r.stderr)
	}
	// The jumps left web-01's addresses in the home: the next jump dials
	// them while it asks for the grant.
	cache := filepath.Join(s.admin, "peers-cache.json")
	if fi, err := os.Stat(cache); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("peer cache: %v %v", fi, err)
	}
	// It opens its channel on that connection meanwhile, and sends the grant
	// on it (issue 17); the console is closed by the process's exit.
	r = jm(t, s.admin, "jump", "web-01", "--timing", "--", "true")
	phases = parseTiming(r.stderr)
	for _, want := range []string{"peer dial, early (cached addresses)", "channel open, early (grant to follow)", "grant on the early channel (checked by the peer)"} {
		if _, ok := phases[want]; r.code != 0 || !ok {
			t.Errorf("a jump with the peer's addresses cached: exit %d, no phase %q\n%s", r.code, want, r.stderr)
		}
	}
	if _, ok := phases["console close (connections, listeners)"]; ok {
		t.Errorf("jump closed its console before the exit:\n%s", r.stderr)
	}
}

// TestJumpWithAWrongPeerCache: the cache holds hints only. An entry that
// names another peer ID at web-01's addresses (a stale name, or a file
// someone wrote) costs a failed early dial; the jump reaches the peer the
// grant names.
func TestJumpWithAWrongPeerCache(t *testing.T) {
	s := newJumpSite(t)
	if r := jm(t, s.admin, "jump", "web-01", "--", "true"); r.code != 0 {
		t.Fatalf("first jump: %d %q", r.code, r.stderr)
	}
	cache := filepath.Join(s.admin, "peers-cache.json")
	var entries []map[string]any
	raw, err := os.ReadFile(cache)
	if err != nil || json.Unmarshal(raw, &entries) != nil || len(entries) != 1 {
		t.Fatalf("cache: %s %v", raw, err)
	}
	key, _, _ := crypto.GenerateEd25519Key(nil)
	impostor, _ := peer.IDFromPrivateKey(key)
	entries[0]["id"] = impostor.String()
	raw, _ = json.Marshal(entries)
	if err := os.WriteFile(cache, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	r := jm(t, s.admin, "jump", "web-01", "-v", "--", "echo", "reached")
	if r.code != 0 || r.stdout != "reached\n" || strings.Contains(r.stderr, impostor.String()) {
		t.Fatalf("jump with a wrong cache entry: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	raw, _ = os.ReadFile(cache)
	if strings.Contains(string(raw), impostor.String()) {
		t.Errorf("the wrong entry stayed: %s", raw)
	}
}
