package peer_test

import (
	"testing"
	"time"

	lpeer "github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/wake"
	"github.com/jumpmesh/jumpmesh/peer"
)

// TestPassivePeerBehindJumpoints: a passive peer behind two jumpoints (its
// type from the site's default-connection-type) is online through the
// first; going passive it closes its tunnels, and those closes do not count
// as the jumpoint lost: woken, it connects through the first jumpoint
// again, at once, and the second is never asked.
func TestPassivePeerBehindJumpoints(t *testing.T) {
	site := passiveSite(t)
	if _, err := site.Admin.SetSettings(site.Ctx(), map[string]string{"default-connection-type": "passive"}); err != nil {
		t.Fatal(err)
	}
	coord := tcpTarget(t, site.Addr)
	j1, j2 := newTestJumpoint(t, coord), newTestJumpoint(t, coord)
	h, _ := installBehind(t, site, "plc-passive", j1, j2)
	port := coordinatortest.FreePort(t, "tcp")
	h.startWith(func(c *peer.RunConfig) { c.PassiveAddr, c.PassivePort = "127.0.0.1", port })
	h.waitStatus(h.id(), "online")
	h.waitWelcomed()
	if st := h.state(); st.ConnectionType != "passive" {
		t.Fatalf("connection type %q; want passive (the site's default)", st.ConnectionType)
	}

	h.waitPassive()
	h.waitStatus(h.id(), "passive")
	coordinatortest.Eventually(t, 20*time.Second, "the tunnels closed", func() bool { return j1.srv.Stats().Open == 0 })
	opens := len(j1.seen())

	id, _ := lpeer.Decode(h.id())
	sendUDP(t, port, encode(t, wakeCommand(t, siteSigner(t, site), id, time.Now().Add(wake.MaxValidity))))
	h.waitStatus(h.id(), "online")
	if len(j1.seen()) <= opens || len(j2.seen()) != 0 {
		t.Fatalf("opens after the wake: first jumpoint %d (before %d), second %d; want the first again",
			len(j1.seen()), opens, len(j2.seen()))
	}
}
