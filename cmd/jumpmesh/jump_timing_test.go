package main

import (
	"strings"
	"testing"
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
		"channel open (grant checked by the peer)", "exec (command run until its exit status)", "console close (connections, listeners)", "total"} {
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
}
