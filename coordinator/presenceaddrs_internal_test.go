package coordinator

import (
	"crypto/rand"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/coordinator/etcdtest"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// TestPresenceGetsTheAddressesIdentifyFoundDuringTheHello: identify tells
// the host the peer's addresses while the hello's transaction commits —
// after its presence record was built without them, before the session is
// attached. The record must still get them (awaitAddrs), or a jump asked
// of another coordinator is answered with none. TestJumpAcrossCoordinators
// met it under load ("A knows B's peer's addresses": 1 in 20 runs at load
// 15, 2 in 14 at load 14, each time the attach had found the addresses
// known and waited for nothing while the record had none).
func TestPresenceGetsTheAddressesIdentifyFoundDuringTheHello(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	srv := etcdtest.Start(t, etcdtest.Options{})
	st, err := openMember(t, testEtcdConfig(srv, "/jumpmesh/identify/"), "a", "")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 4, 19, 0, 0, 0, time.UTC)
	p := fakePeer(t, 0, "user:ann", now)
	id := peer.ID(p.GetId())
	mustUpdate(t, st, func(tx *Tx) error { return tx.PutPeer(p) })

	addr := ma.StringCast("/ip4/192.0.2.1/tcp/4001")
	var helloing, identified atomic.Bool
	var builtBare atomic.Int32 // looks at the host's view before identify
	// Identify finishes as the hello's transaction commits. Set before the
	// service starts its own writers, so that it is not changed under them.
	st.beforeCommit = func() {
		if helloing.Load() {
			identified.Store(true)
		}
	}
	key, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	signer, _ := mesh.NewKeySigner(key)
	svc, err := NewService(ServiceConfig{Store: st, Signer: signer, Clock: mesh.NewManualClock(now),
		PeerAddrs: func(peer.ID) []ma.Multiaddr {
			if identified.Load() {
				return []ma.Multiaddr{addr}
			}
			builtBare.Add(1)
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	helloing.Store(true)
	hello := &pb.PeerHello{Info: proto.CloneOf(p.GetInfo())}
	if _, _, err := svc.registerPeer(id, hello, "192.0.2.8", now, newPeerSession(id, nil)); err != nil {
		t.Fatal(err)
	}
	if builtBare.Load() == 0 {
		t.Fatal("the hello's presence record was built with the addresses: this test did not meet the race")
	}
	eventually(t, 10*time.Second, "the presence record holds the address identify found", func() bool {
		v, ok := recordsUnder(t, st, presencePrefix)[presencePrefix+string(id)]
		rec, _ := decodePresence([]byte(v))
		return ok && rec != nil && len(rec.addrs) == 1 && rec.addrs[0].Equal(addr)
	})
}
