package peer_test

import (
	"context"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/peer"
)

// TestSiteWideChangesReachPeersOfTheOtherCoordinator (issue 16 part 2):
// a peer held by coordinator b; an administrator and a technician whose
// consoles talk to coordinator a. A settings set through a reaches the
// peer; the technician's session on it (granted by a) is closed when an
// administrator removes the technician through a, and the technician's
// next jump is refused.
func TestSiteWideChangesReachPeersOfTheOtherCoordinator(t *testing.T) {
	s := newHASite(t)
	key := s.installer()
	// The peer enrolls through b (a is down a while).
	if err := s.coords["a"].Close(); err != nil {
		t.Fatal(err)
	}
	h := openWall(t, installWall(t, key, "web-00"))
	h.runWall()
	coordinatortest.Eventually(t, 60*time.Second, "web-00 online through b", func() bool {
		st, err := peer.LoadState(h.dir)
		return err == nil && st.Connected && s.heldBy(h.d) == "b"
	})
	s.start("a")
	// Consoles of a: logged in at a's address (their connection stays there).
	aAddr := s.listen["a"] + "/p2p/" + peer.CoordinatorOf(h.d).ID.String()
	login := func(name string, role pb.Role) *console.Client {
		t.Helper()
		inv, err := s.admin.InviteUser(s.ctx(), name, role, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		c, _, err := console.Login(s.ctx(), filepath.Join(t.TempDir(), name), aAddr, inv.GetCode())
		if err != nil {
			t.Fatalf("login %s at a: %v", name, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// tom is an administrator too: he sees every peer.
	ann, tom := login("ann", pb.Role_ROLE_ADMIN), login("tom", pb.Role_ROLE_ADMIN)

	if _, err := ann.SetSettings(s.ctx(), map[string]string{"stats-interval": "7m"}); err != nil {
		t.Fatal(err)
	}
	coordinatortest.Eventually(t, 20*time.Second, "the settings set through a at b's peer", func() bool {
		st, err := peer.LoadState(h.dir)
		return err == nil && st.StatsIntervalSeconds == 420 && s.heldBy(h.d) == "b"
	})

	// tom's session on web-00, granted by a.
	j, err := tom.Jump(s.ctx(), "web-00", grant.Exec)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := j.Open(s.ctx(), execOpen("sh", "-c", "read line; echo got $line"))
	if err != nil {
		t.Fatal(err)
	}
	stdin, stdinW := io.Pipe()
	defer stdinW.Close()
	done := make(chan error, 1)
	go func() {
		_, err := console.Exec(context.Background(), ch, console.ExecIO{Stdin: stdin, Stdout: io.Discard, Stderr: io.Discard})
		done <- err
	}()
	removed := time.Now()
	if err := ann.RemoveUser(s.ctx(), "tom"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
		t.Logf("tom's session on b's peer closed %s after his removal through a", time.Since(removed).Round(time.Millisecond))
	case <-time.After(20 * time.Second):
		t.Fatal("tom's session on b's peer still open 20 s after his removal through a")
	}
	_, err = tom.Jump(s.ctx(), "web-00", grant.Exec)
	if c := catalog.CodeOf(err); c != catalog.CodeUnknownTechnician && c != catalog.CodePermissionDenied {
		t.Fatalf("tom's jump after his removal: %v", err)
	}
}
