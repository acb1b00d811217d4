package coordinator_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/channel"
	"github.com/jumpmesh/jumpmesh/mesh/frame"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/peerproto"
)

// TestPeerConnectingWhileTheCoordinatorStartsIsServed: libp2p listens as
// the coordinator's host starts, before its registry is loaded and its
// handlers are set. A peer of a reconnect storm that connects in between
// is held at the handshake gate until the coordinator is ready, then
// welcomed. Before, its stream met a host that did not speak the peer
// protocol yet ("protocols not supported": 16 of 2,000 failed attempts in
// a storm on a fast machine).
func TestPeerConnectingWhileTheCoordinatorStartsIsServed(t *testing.T) {
	for _, transport := range []int{ma.P_TCP, ma.P_QUIC_V1} {
		t.Run(ma.ProtocolWithCode(transport).Name, func(t *testing.T) { startingPeerServed(t, transport) })
	}
}

func startingPeerServed(t *testing.T, transport int) {
	s := coordinatortest.New(t, console.Login)
	key := s.Installer(&pb.InstallerDefaults{}, 0, week).GetKey()
	site := peer.AddrInfo{ID: s.Coord.ID()}
	for _, a := range s.Coord.Host().Addrs() {
		if _, err := a.ValueForProtocol(transport); err == nil {
			site.Addrs = append(site.Addrs, a)
		}
	}
	if len(site.Addrs) == 0 {
		t.Fatalf("the coordinator listens on no %s address", ma.ProtocolWithCode(transport).Name)
	}
	s.Stop()

	type result struct {
		down *pb.PeerDown
		err  error
	}
	done := make(chan result, 1)
	h := coordinatortest.LoopbackHost(t)
	hello := func() (*pb.PeerDown, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := h.Connect(ctx, site); err != nil {
			return nil, err
		}
		st, err := h.NewStream(ctx, site.ID, peerproto.Protocol)
		if err != nil {
			return nil, err
		}
		ms := frame.NewStream(st, peerproto.MaxMessage)
		up := &pb.PeerUp{Body: &pb.PeerUp_Hello{Hello: &pb.PeerHello{InstallerKey: key,
			Info: &pb.PeerInfo{Hostname: "early", Protocols: []string{string(channel.Protocol)}}}}}
		if err := ms.Write(up, 10*time.Second); err != nil {
			return nil, err
		}
		var down pb.PeerDown
		return &down, ms.Read(&down, 20*time.Second)
	}
	held := false
	restore := coordinator.SetStartingHookForTest(func(waited <-chan struct{}) {
		attempt := make(chan result, 1)
		go func() {
			down, err := hello()
			attempt <- result{down, err}
		}()
		// Until the peer's connection waits at the gate, or its attempt
		// ended (it was not held).
		select {
		case <-waited:
			held = true
			go func() { done <- <-attempt }()
		case r := <-attempt:
			done <- r
		case <-time.After(20 * time.Second):
			done <- result{err: errors.New("the peer's attempt neither ended nor waited at the gate in 20 s")}
		}
	})
	defer restore()
	s.Start()
	r := <-done
	if r.err != nil {
		t.Fatalf("a peer that connected while the coordinator started: %v", r.err)
	}
	if r.down.GetWelcome() == nil {
		t.Fatalf("a peer that connected while the coordinator started was answered %v, want a welcome", r.down)
	}
	if !held {
		t.Fatal("the peer's connection was not held at the gate while the coordinator started")
	}
}
