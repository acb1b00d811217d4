package coordinator

import (
	"crypto/rand"
	"path/filepath"
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// addrService is a Service over a real store whose host "knows" the given
// identify addresses and connection addresses per party.
func addrService(t *testing.T, identify, conns map[peer.ID][]string) *Service {
	t.Helper()
	st, err := OpenStore(filepath.Join(t.TempDir(), "db"), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	signer, _ := mesh.NewKeySigner(key)
	parse := func(m map[peer.ID][]string) func(peer.ID) []ma.Multiaddr {
		return func(id peer.ID) []ma.Multiaddr {
			var out []ma.Multiaddr
			for _, s := range m[id] {
				out = append(out, ma.StringCast(s))
			}
			return out
		}
	}
	svc, err := NewService(ServiceConfig{Store: st, Signer: signer, PeerAddrs: parse(identify), ConnAddrs: parse(conns)})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func addrStrings(addrs []ma.Multiaddr) []string {
	var out []string
	for _, a := range addrs {
		out = append(out, a.String())
	}
	return out
}

// TestPeerAddrsNoLoopbackToAnotherHost is the attack of a compromised (or
// merely old) peer that reports loopback and link-local listen addresses
// from a LAN: a console elsewhere must never be handed them, or it would
// dial its own loopback. Loopback addresses pass only when the peer and
// the console both reach the coordinator over loopback (one host).
func TestPeerAddrsNoLoopbackToAnotherHost(t *testing.T) {
	const web, laptop, local, localConsole = peer.ID("web-01"), peer.ID("laptop"), peer.ID("dev-peer"), peer.ID("dev-console")
	reported := []string{"/ip4/127.0.0.1/tcp/4001", "/ip6/::1/tcp/4001", "/ip4/192.168.2.10/tcp/4001",
		"/ip6/fe80::1/tcp/4001", "/ip4/169.254.7.7/tcp/4001", "/ip4/0.0.0.0/tcp/4001", "/ip4/192.168.2.10/udp/4001/quic-v1"}
	svc := addrService(t,
		map[peer.ID][]string{
			// Identify over a LAN keeps loopback out, but a peer on the
			// coordinator's host (or a forged one) may give anything.
			web:   {"/ip4/203.0.113.10/tcp/4001", "/ip4/127.0.0.2/tcp/4001"},
			local: {"/ip4/127.0.0.1/tcp/4001"},
		},
		map[peer.ID][]string{
			web:          {"/ip4/203.0.113.10/tcp/51000"},
			laptop:       {"/ip4/203.0.113.10/tcp/52000"},
			local:        {"/ip4/127.0.0.1/tcp/53000"},
			localConsole: {"/ip4/127.0.0.1/tcp/54000"},
		})
	for _, id := range []peer.ID{web, local} {
		var raw [][]byte
		for _, s := range reported {
			raw = append(raw, ma.StringCast(s).Bytes())
		}
		svc.peers.put(&pb.Peer{Id: []byte(id), Info: &pb.PeerInfo{ListenAddrs: raw}})
	}

	got := addrStrings(svc.peerAddrs(laptop, web))
	want := []string{"/ip4/203.0.113.10/tcp/4001", "/ip4/192.168.2.10/tcp/4001", "/ip4/192.168.2.10/udp/4001/quic-v1"}
	if !slices.Equal(got, want) {
		t.Errorf("console on a LAN, peer on a LAN: handed %v, want %v", got, want)
	}
	// A console on the coordinator's host, the peer not: still no loopback.
	if got := addrStrings(svc.peerAddrs(localConsole, web)); !slices.Equal(got, want) {
		t.Errorf("console on the coordinator's host, peer on a LAN: handed %v, want %v", got, want)
	}
	// A peer on the coordinator's host, the console not: no loopback.
	for _, a := range svc.peerAddrs(laptop, local) {
		if s := a.String(); s != "/ip4/192.168.2.10/tcp/4001" && s != "/ip4/192.168.2.10/udp/4001/quic-v1" {
			t.Errorf("console on a LAN, peer on the coordinator's host: handed %s", s)
		}
	}
	// All three on one host: loopback is the right address (never
	// link-local or unspecified ones).
	got = addrStrings(svc.peerAddrs(localConsole, local))
	want = []string{"/ip4/127.0.0.1/tcp/4001", "/ip6/::1/tcp/4001", "/ip4/192.168.2.10/tcp/4001", "/ip4/192.168.2.10/udp/4001/quic-v1"}
	if !slices.Equal(got, want) {
		t.Errorf("all on one host: handed %v, want %v", got, want)
	}
}

// TestPeerIP: the IP a console may send probes to is the one the
// coordinator's own connection to the peer comes from — never a relay
// circuit's, never what the peer reports of itself.
func TestPeerIP(t *testing.T) {
	const natted, relayed, gone = peer.ID("natted"), peer.ID("relayed"), peer.ID("gone")
	svc := addrService(t,
		map[peer.ID][]string{natted: {"/ip4/192.0.2.66/tcp/4001"}}, // a forged identify address
		map[peer.ID][]string{
			natted:  {"/ip4/198.51.100.7/udp/1234/quic-v1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit", "/ip4/203.0.113.9/tcp/40123"},
			relayed: {"/ip4/198.51.100.7/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit"},
		})
	if got := svc.peerIP(natted); got != "203.0.113.9" {
		t.Errorf("peerIP(natted) = %q, want the connection's 203.0.113.9", got)
	}
	if got := svc.peerIP(relayed); got != "" {
		t.Errorf("peerIP(relayed) = %q, want none (only a circuit)", got)
	}
	if got := svc.peerIP(gone); got != "" {
		t.Errorf("peerIP(gone) = %q, want none (no connection)", got)
	}
}
