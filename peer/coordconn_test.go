package peer_test

import (
	"testing"
	"time"

	lpeer "github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/peer"
)

// A peer reaches its coordinator over TCP when the coordinator offers TCP,
// and it still does after a restart: identify told it the coordinator's
// QUIC address during the first session, and libp2p dials every address it
// knows of a peer, QUIC first — so before CoordinatorOverTCP a storm after a
// restart came back over QUIC, past the coordinator's handshake gate
// (coordinator/handshakes.go bounds TCP handshakes only).
func TestSessionStaysOnTCPAfterCoordinatorRestart(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	in := site.Installer(nil, 0, week())
	h := install(t, site, in.GetKey(), peer.InstallOptions{})
	id := h.id()
	pid, err := lpeer.Decode(id)
	if err != nil {
		t.Fatal(err)
	}
	h.start()
	h.waitStatus(id, "online")
	checkTCPOnly(t, site, pid)
	for range 2 {
		site.Stop()
		site.Start()
		eventuallyTicking(t, site, 20*time.Second, "the peer back online", func() bool { return h.status(id) == "online" })
		checkTCPOnly(t, site, pid)
	}
}

// checkTCPOnly waits until the coordinator has a connection from the peer
// and fails if any of them is not TCP.
func checkTCPOnly(t *testing.T, site *coordinatortest.Site[*console.Client], pid lpeer.ID) {
	t.Helper()
	coordinatortest.Eventually(t, 20*time.Second, "a connection from the peer", func() bool {
		return len(site.Coord.Host().Network().ConnsToPeer(pid)) > 0
	})
	for _, c := range site.Coord.Host().Network().ConnsToPeer(pid) {
		if _, err := c.RemoteMultiaddr().ValueForProtocol(ma.P_TCP); err != nil {
			t.Fatalf("the peer's connection to its coordinator is %s, want TCP", c.RemoteMultiaddr())
		}
	}
}
