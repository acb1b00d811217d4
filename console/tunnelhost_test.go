package console

import (
	"context"
	"crypto/rand"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/tunnel"
)

func loopbackHost(t *testing.T) host.Host {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h, err := mesh.NewHost(mesh.HostConfig{Key: key, ListenAddrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// TestTunnelHostAttacks: what a jumpoint operator or a bad jump response
// could make the tunnel host do.
//   - A jumpoint that carries the console's tunnel to another host (its
//     own, posing as the peer) gets no session: the console's libp2p
//     handshake inside the tunnel checks the peer's key.
//   - An address that is not the peer's is never dialed, directly or
//     through the jumpoint.
//   - The grant goes only to the jumpoint, in the open.
func TestTunnelHostAttacks(t *testing.T) {
	main, jp, impostor, realPeer := loopbackHost(t), loopbackHost(t), loopbackHost(t), loopbackHost(t)
	var opens atomic.Int32
	var sawGrant atomic.Bool
	srv := tunnel.Serve(jp, tunnel.Config{Authorize: func(_ peer.ID, o *pb.TunnelOpen) error {
		opens.Add(1)
		sawGrant.Store(string(o.GetGrant().GetBody()) == "grant body")
		return nil
	}})
	t.Cleanup(srv.Close)
	main.Peerstore().AddAddrs(jp.ID(), jp.Addrs(), time.Hour)
	g := &pb.JumpGrant{Body: []byte("grant body")}
	refs := []jumpointRef{{id: jp.ID(), name: "plant-a", addrs: jp.Addrs()}}
	th, err := newTunnelHost(main, impostor.Addrs(), refs, g)
	if err != nil {
		t.Fatal(err)
	}
	defer th.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := th.Connect(ctx, peer.AddrInfo{ID: realPeer.ID(), Addrs: impostor.Addrs()}); err == nil {
		t.Fatal("the tunnel host accepted an impostor at the peer's address")
	}
	if opens.Load() == 0 || !sawGrant.Load() {
		t.Errorf("jumpoint opens %d, grant seen %v: the dial did not go through the jumpoint with the grant", opens.Load(), sawGrant.Load())
	}
	if th.Network().Connectedness(impostor.ID()) == network.Connected || th.ID() != main.ID() {
		t.Error("tunnel host connected to the impostor, or does not use the console's key")
	}

	before := opens.Load()
	c, err := th.DialContext(ctx, "tcp", hostPortOf(t, realPeer.Addrs()[0]))
	if err == nil {
		c.Close()
		t.Fatal("the tunnel host dialed an address that is not the peer's")
	}
	if !catalog.HasCode(err, catalog.CodeJumpointUnreachable) {
		t.Errorf("dial to an address not the peer's: %v, want jumpoint_unreachable", err)
	}
	if opens.Load() != before {
		t.Error("an address not the peer's went to the jumpoint")
	}
}

func hostPortOf(t *testing.T, a ma.Multiaddr) string {
	t.Helper()
	ip, err := a.ValueForProtocol(ma.P_IP4)
	if err != nil {
		t.Fatal(err)
	}
	port, err := a.ValueForProtocol(ma.P_TCP)
	if err != nil {
		t.Fatal(err)
	}
	return ip + ":" + port
}
