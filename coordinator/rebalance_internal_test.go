package coordinator

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// TestPeersBehindJumpointsDoNotMove: of the peers a coordinator holds, one
// behind a jumpoint counts towards what it holds but is never asked to
// move (it reaches the site only through its jumpoint's tunnel).
func TestPeersBehindJumpointsDoNotMove(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	st, err := OpenStore("", StoreOptions{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc := serviceOver(t, st, now)
	direct, behind := fakePeer(t, 1, "user:ann", now), fakePeer(t, 2, "user:ann", now)
	behind.Jumpoints = [][]byte{[]byte(newPeerID(t))}
	for _, rec := range []*pb.Peer{direct, behind} {
		svc.peers.registry.put(rec)
		id := peer.ID(rec.GetId())
		svc.peers.registry.attach(id, newPeerSession(id, nil))
	}
	held, movable := svc.peers.movableSessions()
	if held != 2 || len(movable) != 1 || movable[0].id != peer.ID(direct.GetId()) {
		t.Fatalf("held %d, movable %d (want 2 held, only the direct peer movable)", held, len(movable))
	}
}
