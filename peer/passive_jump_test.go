package peer_test

import (
	"strconv"
	"testing"

	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/peer"
)

// TestJumpWakesAPassivePeer is the whole story with real parts: a passive
// peer goes passive, a technician's plain jump (no --wake) finds it passive,
// the coordinator sends the signed command to the peer's passive port
// itself (the site's passive-port, on the address it last saw the peer
// from: loopback here), the peer connects at once, and the command runs.
func TestJumpWakesAPassivePeer(t *testing.T) {
	site := passiveSite(t)
	port := coordinatortest.FreePort(t, "tcp")
	if _, err := site.Admin.SetSettings(site.Ctx(), map[string]string{"passive-port": strconv.Itoa(port)}); err != nil {
		t.Fatal(err)
	}
	key := site.Installer(&pb.InstallerDefaults{Name: "dormant-01", ConnectionType: pb.ConnectionType_CONNECTION_TYPE_PASSIVE}, 0, week()).GetKey()
	h := install(t, site, key, peer.InstallOptions{})
	// The site's port; only the listening address is the test's, so nothing
	// but loopback is listened on.
	h.startWith(func(c *peer.RunConfig) { c.PassiveAddr, c.PassivePort = "127.0.0.1", port })
	h.waitStatus(h.id(), "online")
	h.waitWelcomed()
	h.waitPassive()
	h.waitStatus(h.id(), "passive")

	out, _, st := run(t, site.Admin, "dormant-01", "echo", "awake")
	if out != "awake\n" || st.GetCode() != 0 {
		t.Fatalf("jump to the passive peer: %q, %v", out, st)
	}
	if c := h.state().PassiveCounters; c != nil && c.Refused() != 0 {
		t.Fatalf("the passive port refused something: %+v", c)
	}
	h.waitCounters("the coordinator's command accepted", func(c *peer.PassiveCounters) bool { return c.Accepted == 1 })
}
