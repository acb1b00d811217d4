package punch

import (
	"context"
	"crypto/rand"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/mesh"
)

func newDualHost(t *testing.T, cfg mesh.HostConfig) host.Host {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Key = key
	cfg.ListenAddrs = []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0"), ma.StringCast("/ip4/127.0.0.1/udp/0/quic-v1")}
	h, err := mesh.NewHost(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func addrOf(t *testing.T, h host.Host, proto int) ma.Multiaddr {
	t.Helper()
	for _, a := range h.Addrs() {
		if _, err := a.ValueForProtocol(proto); err == nil {
			return a
		}
	}
	t.Fatalf("no address with protocol %d in %v", proto, h.Addrs())
	return nil
}

// TestObservationFlowIsNotTheHosts: while a fresh observation's flow to a
// relay is open, a console still reaches the peer through that relay. The
// peer holds its reservation over QUIC, as peers do; the observation is a
// second connection, over TCP. Dialled under the peer's own key, the relay
// took that flow for its newest, busiest connection to the peer and opened
// the circuit's stop stream on it, which the peer never reads: the console
// heard CONNECTION_FAILED (the lab's grid, con-udp-blocked →
// peer-sequential). The flow must be a stranger's to the observer.
func TestObservationFlowIsNotTheHosts(t *testing.T) {
	relay := newDualHost(t, mesh.HostConfig{})
	svc, err := relayv2.New(relay, relayv2.WithInfiniteLimits())
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	me := newDualHost(t, mesh.HostConfig{RelayClient: true})
	const echo = "/jumpmesh/test/observe-echo"
	me.SetStreamHandler(echo, func(s network.Stream) {
		defer s.Close()
		_, _ = s.Write([]byte("ok"))
	})
	console := newDualHost(t, mesh.HostConfig{RelayClient: true})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	relayQUIC := peer.AddrInfo{ID: relay.ID(), Addrs: []ma.Multiaddr{addrOf(t, relay, ma.P_QUIC_V1)}}
	if err := me.Connect(ctx, relayQUIC); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Reserve(ctx, me, relayQUIC); err != nil {
		t.Fatal(err)
	}

	// The observation flow, held open while the console connects.
	relayTCP := addrOf(t, relay, ma.P_TCP)
	tr, err := flowTransport(me, relayTCP)
	if err != nil {
		t.Fatal(err)
	}
	flow, err := tr.Dial(ctx, relayTCP, relay.ID())
	if err != nil {
		t.Fatal(err)
	}
	defer flow.Close()
	// The observer is still authenticated: a host at its address under
	// another key is no observer.
	if c, err := tr.Dial(ctx, relayTCP, console.ID()); err == nil {
		c.Close()
		t.Errorf("the flow transport accepted %s for %s", relay.ID(), console.ID())
	}
	if !flow.LocalMultiaddr().Equal(ma.StringCast("/ip4/127.0.0.1/tcp/" + tcpListenPort(t, me))) {
		t.Errorf("the flow left from %v, not the listening port", flow.LocalMultiaddr())
	}
	var seen network.Conn
	for seen == nil {
		for _, c := range relay.Network().Conns() {
			if c.RemoteMultiaddr().Equal(flow.LocalMultiaddr()) {
				seen = c
			}
		}
		select {
		case <-ctx.Done():
			t.Fatal("the relay never accepted the observation flow")
		case <-time.After(10 * time.Millisecond):
		}
	}
	if seen.RemotePeer() == me.ID() {
		t.Fatalf("the relay files the observation flow as a connection to the peer")
	}

	circuit := ma.StringCast(relayQUIC.Addrs[0].String() + "/p2p/" + relay.ID().String() + "/p2p-circuit")
	if err := console.Connect(ctx, peer.AddrInfo{ID: me.ID(), Addrs: []ma.Multiaddr{circuit}}); err != nil {
		t.Fatalf("connecting through the relay: %v", err)
	}
	sctx, scancel := context.WithTimeout(network.WithAllowLimitedConn(ctx, "test"), 5*time.Second)
	defer scancel()
	s, err := console.NewStream(sctx, me.ID(), echo)
	if err != nil {
		t.Fatalf("a stream through the relay: %v", err)
	}
	defer s.Close()
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "ok" {
		t.Fatalf("read %q, %v through the relay; want ok", got, err)
	}
}
