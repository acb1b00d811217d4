package punch

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/mesh"
)

// fakeConn is the part of a connection observe reads.
type fakeConn struct {
	network.Conn
	local, remote ma.Multiaddr
	opened        time.Time
}

func (c fakeConn) LocalMultiaddr() ma.Multiaddr  { return c.local }
func (c fakeConn) RemoteMultiaddr() ma.Multiaddr { return c.remote }
func (c fakeConn) Stat() network.ConnStats {
	return network.ConnStats{Stats: network.Stats{Opened: c.opened}}
}

// TestPuncherTrustsOnlyItsObservers: the puncher offers the NAT mapping a
// trusted observer reported for a TCP connection that left from the
// listening port — nothing a stranger says, nothing about another port, a
// relayed connection or QUIC.
func TestPuncherTrustsOnlyItsObservers(t *testing.T) {
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h, err := mesh.NewHost(mesh.HostConfig{Key: key, ListenAddrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")}, RelayClient: true, Puncher: true})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	coordinator, stranger := peer.ID("coordinator"), peer.ID("stranger")
	p, err := Start(h, func(id peer.ID) bool { return id == coordinator }, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var port string
	for _, a := range h.Network().ListenAddresses() {
		if v, err := a.ValueForProtocol(ma.P_TCP); err == nil {
			port = v
		}
	}
	if port == "" {
		t.Fatalf("no TCP listen address in %v", h.Network().ListenAddresses())
	}
	fromListen := ma.StringCast("/ip4/127.0.0.1/tcp/" + port)
	remote := ma.StringCast("/ip4/1.2.3.4/tcp/4830")
	for _, e := range []event.EvtPeerIdentificationCompleted{
		{Peer: stranger, Conn: fakeConn{local: fromListen, remote: remote}, ObservedAddr: ma.StringCast("/ip4/5.6.7.8/tcp/1111")},
		{Peer: coordinator, Conn: fakeConn{local: ma.StringCast("/ip4/127.0.0.1/tcp/1"), remote: remote}, ObservedAddr: ma.StringCast("/ip4/5.6.7.8/tcp/2222")},
		{Peer: coordinator, Conn: fakeConn{local: fromListen, remote: ma.StringCast("/ip4/1.2.3.4/tcp/4832/p2p/" + h.ID().String() + "/p2p-circuit")}, ObservedAddr: ma.StringCast("/ip4/5.6.7.8/tcp/3333")},
		{Peer: coordinator, Conn: fakeConn{local: fromListen, remote: remote}, ObservedAddr: ma.StringCast("/ip4/192.168.1.2/tcp/4444")},
		{Peer: coordinator, Conn: fakeConn{local: ma.StringCast("/ip4/127.0.0.1/udp/" + port + "/quic-v1"), remote: remote}, ObservedAddr: ma.StringCast("/ip4/5.6.7.8/udp/5555/quic-v1")},
		{Peer: coordinator, Conn: fakeConn{local: fromListen, remote: remote}, ObservedAddr: ma.StringCast("/ip4/5.6.7.8/tcp/" + port)},
	} {
		p.observe(e)
	}
	got := p.publicAddrs()
	if len(got) != 1 || !got[0].Equal(ma.StringCast("/ip4/5.6.7.8/tcp/"+port)) {
		t.Fatalf("offered %v, want only the coordinator's observation of the listening port", got)
	}
}
