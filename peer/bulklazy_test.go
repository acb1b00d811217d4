package peer_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/peer"
)

// TestRelayedQuickCommandAsksNoSlot: a relayed command that ends before
// its channel has carried bulk or run for a while (`true`) asks the relay
// for no splice slot (issue 17: a needless round trip and slot for every
// relayed `jump H -- true`); one whose output is bulk is still offered the
// switch at once and moves to the splice, long before the wait the peer
// gives a channel that carries little (a minute here, so only the bytes
// can have started it); and one that still runs after that wait is
// offered too. A real relay with its splice, a real peer daemon.
func TestRelayedQuickCommandAsksNoSlot(t *testing.T) {
	site, r, h := relayedPeer(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	peer.SetBulkSwitchAfter(h.d, time.Minute)
	j := relayedJump(t, site, "behind-nat", r, grant.Exec)
	for range 3 {
		s := startRelayedExec(t, ctx, j, console.ExecCommand{Argv: []string{"true"}})
		s.wait(t, 0)
	}
	s := startRelayedExec(t, ctx, j, console.ExecCommand{Argv: []string{"sh", "-c", "echo short; exit 4"}})
	s.wait(t, 4)
	if out := s.output(); out != "short\n" {
		t.Fatalf("output %q", out)
	}
	if n := peer.SpliceSlotAsks(h.d); n != 0 {
		t.Fatalf("the peer asked its relay for %d splice slots for commands that ended at once, want none", n)
	}
	if offered, _ := peer.BulkSwitches(h.d); offered != 0 {
		t.Fatalf("the peer offered %d switches, want none", offered)
	}
	// Bulk output: offered by its bytes, switched while it runs.
	const n = 8 << 20
	s = startRelayedExec(t, ctx, j, console.ExecCommand{Argv: []string{"sh", "-c", "head -c 8388608 /dev/zero; read x || exit 0"}})
	waitSwitched(t, s)
	_ = s.stdin.Close()
	s.wait(t, 0)
	if out := s.output(); len(out) != n || strings.Trim(out, "\x00") != "" {
		t.Fatalf("%d bytes of output, want %d zeros", len(out), n)
	}
	if got := peer.SpliceSlotAsks(h.d); got != 1 {
		t.Fatalf("%d slot requests after the bulk command, want 1", got)
	}
	// The peer counts a switched channel when its handler ends, after the
	// console has the exit status.
	coordinatortest.Eventually(t, 10*time.Second, "one switch offered, one made", func() bool {
		offered, switched := peer.BulkSwitches(h.d)
		return offered == 1 && switched == 1
	})
	// A command that carries little but keeps running: offered after the
	// wait (a short one now).
	peer.SetBulkSwitchAfter(h.d, 20*time.Millisecond)
	s = startRelayedExec(t, ctx, j, console.ExecCommand{Argv: []string{"cat"}})
	waitSwitched(t, s)
	_ = s.stdin.Close()
	s.wait(t, 0)
	if got := peer.SpliceSlotAsks(h.d); got != 2 {
		t.Fatalf("%d slot requests after a command that kept running, want 2", got)
	}
}
