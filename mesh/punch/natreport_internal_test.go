package punch

import (
	"context"
	"crypto/rand"
	"net/netip"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/natmap"
)

func flow(dest, mapped string, at int) natmap.Observation {
	return natmap.Observation{Dest: netip.MustParseAddrPort(dest), Mapped: netip.MustParseAddrPort(mapped), At: time.Unix(int64(at), 0)}
}

// TestNATReport: the report tells the kinds natmap sees in the TCP and UDP
// flows, whether the NAT kept the listening port, whether there is a NAT
// at all, and says UDP is blocked only when no QUIC flow was ever seen.
func TestNATReport(t *testing.T) {
	listen := []ma.Multiaddr{ma.StringCast("/ip4/0.0.0.0/tcp/4001"), ma.StringCast("/ip4/0.0.0.0/udp/4001/quic-v1")}
	ifaces := []ma.Multiaddr{ma.StringCast("/ip4/10.0.0.2/tcp/4001"), ma.StringCast("/ip4/198.51.100.9/tcp/4001")}
	coord, relay := "198.51.100.1:4830", "203.0.113.5:4001"
	now := time.Unix(100, 0)
	for _, tc := range []struct {
		name     string
		tcp, udp []natmap.Observation
		blocked  bool
		want     NATReport
	}{
		{name: "nothing seen", blocked: true, want: NATReport{TCP: natmap.Unknown, UDP: Blocked}},
		{name: "UDP only",
			udp:  []natmap.Observation{flow(relay, "203.0.113.7:4001", 1)},
			want: NATReport{TCP: natmap.Unknown, UDP: natmap.Unknown, UDPPublic: netip.MustParseAddrPort("203.0.113.7:4001")}},
		{name: "easy, port-preserving",
			tcp: []natmap.Observation{flow(coord, "203.0.113.7:4001", 1), flow(relay, "203.0.113.7:4001", 2)},
			udp: []natmap.Observation{flow(relay, "203.0.113.7:4001", 1), flow(coord, "203.0.113.7:4001", 2)},
			want: NATReport{TCP: natmap.EndpointIndependent, UDP: natmap.EndpointIndependent, PortPreserving: true, Public: netip.MustParseAddrPort("203.0.113.7:4001"),
				UDPPublic: netip.MustParseAddrPort("203.0.113.7:4001")}},
		{name: "easy, another port; one QUIC observer, so blocked is not said",
			tcp:     []natmap.Observation{flow(coord, "203.0.113.7:5000", 1), flow(relay, "203.0.113.7:5000", 2)},
			udp:     []natmap.Observation{flow(relay, "203.0.113.7:5000", 1)},
			blocked: true,
			want: NATReport{TCP: natmap.EndpointIndependent, UDP: natmap.Unknown, Public: netip.MustParseAddrPort("203.0.113.7:5000"),
				UDPPublic: netip.MustParseAddrPort("203.0.113.7:5000")}},
		{name: "hard",
			tcp:  []natmap.Observation{flow(coord, "203.0.113.7:31000", 1), flow(relay, "203.0.113.7:9000", 2)},
			want: NATReport{TCP: natmap.Random, UDP: natmap.Unknown, Public: netip.MustParseAddrPort("203.0.113.7:9000")}},
		{name: "sequential",
			tcp:  []natmap.Observation{flow(coord, "203.0.113.7:31000", 1), flow(relay, "203.0.113.7:31002", 2)},
			want: NATReport{TCP: natmap.Sequential, UDP: natmap.Unknown, Public: netip.MustParseAddrPort("203.0.113.7:31002")}},
		{name: "no NAT",
			tcp:  []natmap.Observation{flow(coord, "198.51.100.9:4001", 1), flow(relay, "198.51.100.9:4001", 2)},
			want: NATReport{TCP: natmap.EndpointIndependent, UDP: natmap.Unknown, PortPreserving: true, NoNAT: true, Public: netip.MustParseAddrPort("198.51.100.9:4001")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := natReport(tc.tcp, tc.udp, listen, ifaces, 2, tc.blocked, now)
			tc.want.Observers, tc.want.Updated = 2, now
			if got != tc.want {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// TestPuncherReportsQUICFlows: a QUIC flow a trusted observer saw counts
// for the report's UDP kind and its observers, and tells WithNATChange, but
// is never offered for a punch; a stranger's observation counts for nothing.
func TestPuncherReportsQUICFlows(t *testing.T) {
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h, err := mesh.NewHost(mesh.HostConfig{Key: key, ListenAddrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0"), ma.StringCast("/ip4/127.0.0.1/udp/0/quic-v1")}, RelayClient: true, Puncher: true})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	coordinator, relay, stranger := peer.ID("coordinator"), peer.ID("relay"), peer.ID("stranger")
	changed := make(chan struct{}, 10)
	p, err := Start(h, func(id peer.ID) bool { return id == coordinator || id == relay }, nil, WithNATChange(func() { changed <- struct{}{} }))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var tcpPort, udpPort string
	for _, a := range h.Network().ListenAddresses() {
		if v, err := a.ValueForProtocol(ma.P_TCP); err == nil {
			tcpPort = v
		}
		if v, err := a.ValueForProtocol(ma.P_UDP); err == nil {
			udpPort = v
		}
	}
	fromTCP, fromUDP := ma.StringCast("/ip4/127.0.0.1/tcp/"+tcpPort), ma.StringCast("/ip4/127.0.0.1/udp/"+udpPort+"/quic-v1")
	if r := p.NAT(); r.Known() || r.TCP != natmap.Unknown || r.UDP != natmap.Unknown {
		t.Fatalf("before any observation: %+v", r)
	}
	for _, e := range []event.EvtPeerIdentificationCompleted{
		{Peer: stranger, Conn: fakeConn{local: fromUDP, remote: ma.StringCast("/ip4/1.2.3.9/udp/4001/quic-v1")}, ObservedAddr: ma.StringCast("/ip4/5.6.7.8/udp/1111/quic-v1")},
		{Peer: coordinator, Conn: fakeConn{local: fromTCP, remote: ma.StringCast("/ip4/1.2.3.4/tcp/4830")}, ObservedAddr: ma.StringCast("/ip4/5.6.7.8/tcp/" + tcpPort)},
		{Peer: relay, Conn: fakeConn{local: fromUDP, remote: ma.StringCast("/ip4/1.2.3.5/udp/4001/quic-v1")}, ObservedAddr: ma.StringCast("/ip4/5.6.7.8/udp/2222/quic-v1")},
		{Peer: coordinator, Conn: fakeConn{local: fromUDP, remote: ma.StringCast("/ip4/1.2.3.4/udp/4830/quic-v1")}, ObservedAddr: ma.StringCast("/ip4/5.6.7.8/udp/3333/quic-v1")},
	} {
		p.observe(e)
	}
	r := p.NAT()
	if r.TCP != natmap.Unknown || r.UDP != natmap.Random || !r.PortPreserving || r.Observers != 2 || !r.Known() || r.Public != netip.MustParseAddrPort("5.6.7.8:"+tcpPort) {
		t.Fatalf("report %+v: want TCP unknown (one flow), UDP random, port-preserving, 2 observers", r)
	}
	if len(changed) != 3 {
		t.Fatalf("%d changes told, want 3 (the trusted observations)", len(changed))
	}
	for _, a := range p.publicAddrs() {
		if q, _ := transportPort(a); q != "tcp" {
			t.Fatalf("offered %v for a punch: only TCP mappings are", a)
		}
	}
}

// TestFreshQUICObservation: the NAT report's fresh UDP observation is one
// QUIC connection from the listening port (the QUIC transport reuses it)
// to a trusted peer, which tells where it came from; the observer is not
// added to the swarm.
func TestFreshQUICObservation(t *testing.T) {
	newHost := func() host.Host {
		key, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		h, err := mesh.NewHost(mesh.HostConfig{Key: key, ListenAddrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0"), ma.StringCast("/ip4/127.0.0.1/udp/0/quic-v1")}, RelayClient: true, Puncher: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		return h
	}
	observer, me := newHost(), newHost()
	p, err := Start(me, func(id peer.ID) bool { return id == observer.ID() }, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if !p.listensOn("udp") || !p.listensOn("tcp") {
		t.Fatalf("listens on %v: want TCP and QUIC", me.Network().ListenAddresses())
	}
	var addr ma.Multiaddr
	for _, a := range observer.Addrs() {
		if isQUIC(a) {
			addr = a
		}
	}
	tr := me.Network().(dialingNetwork).TransportForDialing(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	obs, opened, err := askObserved(ctx, tr, peer.AddrInfo{ID: observer.ID(), Addrs: []ma.Multiaddr{addr}})
	if err != nil {
		t.Fatal(err)
	}
	if q, _ := transportPort(obs); q != "udp" || !p.listeningOn("udp", opened.local) || !p.listeningOn("udp", obs) {
		t.Fatalf("observed %v from %v: want a QUIC flow from the listening port", obs, opened.local)
	}
	if len(me.Network().ConnsToPeer(observer.ID())) != 0 {
		t.Errorf("the observer was added to the swarm")
	}
}
