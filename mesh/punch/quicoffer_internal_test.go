package punch

import (
	"crypto/rand"
	"net/netip"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/natmap"
)

func qflow(dest, mapped string, at time.Time) natmap.Observation {
	return natmap.Observation{Dest: netip.MustParseAddrPort(dest), Mapped: netip.MustParseAddrPort(mapped), At: at}
}

// TestQUICAddr: a punch offers the QUIC mapping when the observations show
// it the same for every destination, never when they show a port per
// destination (hard: probing's case) or none (UDP blocked).
func TestQUICAddr(t *testing.T) {
	t0 := time.Now()
	for _, c := range []struct {
		name  string
		flows []natmap.Observation
		want  string
	}{
		{"none (UDP blocked)", nil, ""},
		{"one observer", []natmap.Observation{qflow("1.1.1.1:443", "5.6.7.8:4001", t0)}, "/ip4/5.6.7.8/udp/4001/quic-v1"},
		{"two that agree", []natmap.Observation{qflow("1.1.1.1:443", "5.6.7.8:4001", t0), qflow("2.2.2.2:443", "5.6.7.8:4001", t0.Add(time.Second))}, "/ip4/5.6.7.8/udp/4001/quic-v1"},
		{"a port per destination", []natmap.Observation{qflow("1.1.1.1:443", "5.6.7.8:4001", t0), qflow("2.2.2.2:443", "5.6.7.8:31337", t0.Add(time.Second))}, ""},
		{"the next port per flow", []natmap.Observation{qflow("1.1.1.1:443", "5.6.7.8:4001", t0), qflow("2.2.2.2:443", "5.6.7.8:4002", t0.Add(time.Second))}, ""},
		{"two public IPs", []natmap.Observation{qflow("1.1.1.1:443", "5.6.7.8:4001", t0), qflow("2.2.2.2:443", "5.6.7.9:4001", t0.Add(time.Second))}, ""},
		{"IPv6", []natmap.Observation{qflow("[2001:db8::1]:443", "[2001:db8::2]:4001", t0)}, "/ip6/2001:db8::2/udp/4001/quic-v1"},
	} {
		got := quicAddr(c.flows)
		switch {
		case c.want == "" && got != nil:
			t.Errorf("%s: offered %v, want nothing", c.name, got)
		case c.want != "" && (got == nil || !got.Equal(ma.StringCast(c.want))):
			t.Errorf("%s: offered %v, want %s", c.name, got, c.want)
		}
	}
}

// TestPuncherOffersQUICMapping: besides its TCP mapping the puncher offers
// the QUIC mapping a trusted observer saw of its QUIC listening port — not
// one a stranger reported, not one of another port, and none once a second
// trusted observer saw another port (a hard NAT).
func TestPuncherOffersQUICMapping(t *testing.T) {
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
	p, err := Start(h, func(id peer.ID) bool { return id == coordinator || id == relay }, nil)
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
	if tcpPort == "" || udpPort == "" {
		t.Fatalf("no TCP and QUIC listen addresses in %v", h.Network().ListenAddresses())
	}
	tcpListen := ma.StringCast("/ip4/127.0.0.1/tcp/" + tcpPort)
	udpListen := ma.StringCast("/ip4/127.0.0.1/udp/" + udpPort + "/quic-v1")
	for _, e := range []event.EvtPeerIdentificationCompleted{
		{Peer: stranger, Conn: fakeConn{local: udpListen, remote: ma.StringCast("/ip4/1.2.3.4/udp/443/quic-v1")}, ObservedAddr: ma.StringCast("/ip4/6.6.6.6/udp/6666/quic-v1")},
		{Peer: coordinator, Conn: fakeConn{local: ma.StringCast("/ip4/127.0.0.1/udp/1/quic-v1"), remote: ma.StringCast("/ip4/1.2.3.4/udp/443/quic-v1")}, ObservedAddr: ma.StringCast("/ip4/5.6.7.8/udp/1111/quic-v1")},
		{Peer: coordinator, Conn: fakeConn{local: tcpListen, remote: ma.StringCast("/ip4/1.2.3.4/tcp/443")}, ObservedAddr: ma.StringCast("/ip4/5.6.7.8/tcp/" + tcpPort)},
		{Peer: relay, Conn: fakeConn{local: udpListen, remote: ma.StringCast("/ip4/1.2.3.5/udp/443/quic-v1")}, ObservedAddr: ma.StringCast("/ip4/5.6.7.8/udp/4001/quic-v1")},
	} {
		p.observe(e)
	}
	want := []ma.Multiaddr{ma.StringCast("/ip4/5.6.7.8/tcp/" + tcpPort), ma.StringCast("/ip4/5.6.7.8/udp/4001/quic-v1")}
	if got := p.publicAddrs(); !sameAddrs(got, want) {
		t.Fatalf("offered %v, want %v", got, want)
	}
	p.observe(event.EvtPeerIdentificationCompleted{Peer: coordinator, Conn: fakeConn{local: udpListen, remote: ma.StringCast("/ip4/1.2.3.4/udp/443/quic-v1"), opened: time.Now().Add(time.Second)}, ObservedAddr: ma.StringCast("/ip4/5.6.7.8/udp/31337/quic-v1")})
	if got := p.publicAddrs(); !sameAddrs(got, want[:1]) {
		t.Fatalf("a port per destination: offered %v, want %v", got, want[:1])
	}
}

func sameAddrs(a, b []ma.Multiaddr) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

// TestQUICOfferFilterLocal: the console's hole-punching service offers
// what it did, plus the QUIC mapping once one is known, and asks no
// untrusted peer for it (a peer or stranger could name any address, and
// the punches of the peers the console answers would go there).
func TestQUICOfferFilterLocal(t *testing.T) {
	o := NewQUICOffer()
	defer o.Close()
	tcp := []ma.Multiaddr{ma.StringCast("/ip4/5.6.7.8/tcp/4001")}
	if got := o.FilterLocal("peer", tcp); !sameAddrs(got, tcp) {
		t.Fatalf("no mapping yet: offered %v, want %v", got, tcp)
	}
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h, err := mesh.NewHost(mesh.HostConfig{Key: key, ListenAddrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/udp/0/quic-v1")}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	stranger := peer.ID("stranger")
	h.Peerstore().AddAddr(stranger, ma.StringCast("/ip4/1.2.3.4/udp/443/quic-v1"), time.Hour)
	if err := o.Start(h, func(peer.ID) bool { return false }); err != nil {
		t.Fatal(err)
	}
	o.maybeObserve(h, stranger)
	o.mu.Lock()
	asked := len(o.asked)
	o.flows = []natmap.Observation{qflow("1.2.3.4:443", "5.6.7.8:4002", time.Now())}
	o.mu.Unlock()
	if asked != 0 {
		t.Fatalf("asked %d untrusted peers for the QUIC mapping", asked)
	}
	want := append(tcp, ma.StringCast("/ip4/5.6.7.8/udp/4002/quic-v1"))
	if got := o.FilterLocal("peer", tcp); !sameAddrs(got, want) {
		t.Fatalf("offered %v, want %v", got, want)
	}
	if got := o.FilterLocal("peer", want); !sameAddrs(got, want) {
		t.Fatalf("offered %v, want %v (once)", got, want)
	}
	if got := o.FilterRemote("peer", tcp); !sameAddrs(got, tcp) {
		t.Fatalf("remote's addresses %v became %v", tcp, got)
	}
}

// TestQUICOpenerIsNotQUIC: openQUIC's datagram has QUIC's fixed bit clear,
// so a QUIC stack that receives it drops it.
func TestQUICOpenerIsNotQUIC(t *testing.T) {
	if quicOpener[0]&0x40 != 0 {
		t.Fatalf("first byte %#x has the fixed bit set", quicOpener[0])
	}
}
