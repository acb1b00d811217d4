package punch

import (
	"context"
	"crypto/rand"
	"slices"
	"strconv"
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

func newTestHost(t *testing.T) host.Host {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h, err := mesh.NewHost(mesh.HostConfig{Key: key, ListenAddrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")}, RelayClient: true, Puncher: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func tcpListenPort(t *testing.T, h host.Host) string {
	t.Helper()
	for _, a := range h.Network().ListenAddresses() {
		if v, err := a.ValueForProtocol(ma.P_TCP); err == nil {
			return v
		}
	}
	t.Fatalf("no TCP listen address in %v", h.Network().ListenAddresses())
	return ""
}

// TestPuncherOffersPredictedPorts: the flows trusted observers saw from
// the listening port decide what the puncher offers. Two flows a port
// apart (a sequential NAT): the next punchCandidates ports, best
// first, and not the observed mapping itself (it belongs to the observer's
// flow). One port for both: that port. Random: the latest observation, as
// before.
func TestPuncherOffersPredictedPorts(t *testing.T) {
	coordinator, relay := peer.ID("coordinator"), peer.ID("relay")
	trusted := func(id peer.ID) bool { return id == coordinator || id == relay }
	now := time.Now()
	for _, tc := range []struct {
		name  string
		ports [2]int
		want  []string
	}{
		{"sequential", [2]int{30000, 30001}, []string{"30002", "30003", "30004"}},
		{"endpoint-independent", [2]int{30000, 30000}, []string{"30000"}},
		{"random", [2]int{30000, 12345}, []string{"12345"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHost(t)
			p, err := Start(h, trusted, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			from := ma.StringCast("/ip4/127.0.0.1/tcp/" + tcpListenPort(t, h))
			for i, id := range []peer.ID{coordinator, relay} {
				p.observe(event.EvtPeerIdentificationCompleted{
					Peer: id,
					Conn: fakeConn{local: from, remote: ma.StringCast("/ip4/198.51.100." + strconv.Itoa(10+i) + "/tcp/4830"),
						opened: now.Add(time.Duration(i) * 100 * time.Millisecond)},
					ObservedAddr: ma.StringCast("/ip4/5.6.7.8/tcp/" + strconv.Itoa(tc.ports[i])),
				})
			}
			got := p.publicAddrs()
			var ports []string
			for _, a := range got {
				v, err := a.ValueForProtocol(ma.P_TCP)
				if err != nil {
					t.Fatalf("offered %v", a)
				}
				if ip, _ := a.ValueForProtocol(ma.P_IP4); ip != "5.6.7.8" {
					t.Fatalf("offered %v: not the NAT's address", a)
				}
				ports = append(ports, v)
			}
			if len(ports) < len(tc.want) || !slices.Equal(ports[:len(tc.want)], tc.want) {
				t.Fatalf("offered %v, want it to start %v", ports, tc.want)
			}
			if tc.name == "sequential" && (len(ports) != punchCandidates || punchCandidates > natmap.MaxCandidates) {
				t.Errorf("offered %d ports, want %d (within natmap's %d): the remote dials them together", len(ports), punchCandidates, natmap.MaxCandidates)
			}
			if tc.name != "sequential" && len(ports) != 1 {
				t.Errorf("offered %v, want one address", ports)
			}
		})
	}
}

// TestFreshObservation: a fresh observation is one new TCP connection from
// the listening port to a trusted peer, which tells where it came from;
// the observer is not added to the swarm (libp2p keeps one connection per
// peer) and the flow is kept for natmap only when it left from the
// listening port.
func TestFreshObservation(t *testing.T) {
	observer, me := newTestHost(t), newTestHost(t)
	p, err := Start(me, func(id peer.ID) bool { return id == observer.ID() }, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	tr := me.Network().(dialingNetwork).TransportForDialing(observer.Addrs()[0])
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var addr ma.Multiaddr
	for _, a := range observer.Addrs() {
		if _, err := a.ValueForProtocol(ma.P_TCP); err == nil {
			addr = a
		}
	}
	obs, opened, err := askObserved(ctx, tr, peer.AddrInfo{ID: observer.ID(), Addrs: []ma.Multiaddr{addr}})
	if err != nil {
		t.Fatal(err)
	}
	want := "/ip4/127.0.0.1/tcp/" + tcpListenPort(t, me)
	if obs.String() != want || !opened.local.Equal(ma.StringCast(want)) || !p.listening(opened.local) {
		t.Fatalf("observed %v from %v, want %s: the listening port", obs, opened.local, want)
	}
	if len(me.Network().ConnsToPeer(observer.ID())) != 0 {
		t.Errorf("the observer was added to the swarm")
	}
	// A trusted peer reached over TCP already is no observer: the same
	// two ports cannot carry a second flow.
	if err := me.Connect(ctx, peer.AddrInfo{ID: observer.ID(), Addrs: []ma.Multiaddr{addr}}); err != nil {
		t.Fatal(err)
	}
	if got := p.observers(); len(got) != 0 {
		t.Errorf("observers %v, want none: the only trusted peer is connected over TCP", got)
	}
}

// TestPredictionTrustsOnlyItsObservers: what a stranger, a relayed
// connection or another port reports never enters the flows the
// prediction rests on, and the ports offered are always on the address the
// trusted observers saw: a stranger cannot make the puncher offer, and the
// console dial, ports of an address of its choosing.
func TestPredictionTrustsOnlyItsObservers(t *testing.T) {
	coordinator, relay, stranger := peer.ID("coordinator"), peer.ID("relay"), peer.ID("stranger")
	h := newTestHost(t)
	p, err := Start(h, func(id peer.ID) bool { return id == coordinator || id == relay }, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	from := ma.StringCast("/ip4/127.0.0.1/tcp/" + tcpListenPort(t, h))
	now := time.Now()
	ev := func(id peer.ID, local, remote string, obs string, i int) event.EvtPeerIdentificationCompleted {
		l := from
		if local != "" {
			l = ma.StringCast(local)
		}
		return event.EvtPeerIdentificationCompleted{Peer: id, ObservedAddr: ma.StringCast(obs),
			Conn: fakeConn{local: l, remote: ma.StringCast(remote), opened: now.Add(time.Duration(i) * time.Millisecond)}}
	}
	for i, e := range []event.EvtPeerIdentificationCompleted{
		ev(coordinator, "", "/ip4/198.51.100.10/tcp/4830", "/ip4/5.6.7.8/tcp/30000", 0),
		// A stranger claims the next port, then a victim's address.
		ev(stranger, "", "/ip4/198.51.100.66/tcp/4830", "/ip4/5.6.7.8/tcp/30001", 1),
		ev(stranger, "", "/ip4/198.51.100.66/tcp/4831", "/ip4/9.9.9.9/tcp/30002", 2),
		// A trusted observer, about another local port.
		ev(relay, "/ip4/127.0.0.1/tcp/1", "/ip4/198.51.100.11/tcp/4832", "/ip4/5.6.7.8/tcp/30001", 3),
	} {
		p.observe(e)
		if got := p.publicAddrs(); len(got) != 1 || !got[0].Equal(ma.StringCast("/ip4/5.6.7.8/tcp/30000")) {
			t.Fatalf("after event %d: offered %v, want only the coordinator's observation", i, got)
		}
	}
	if len(p.flows) != 1 {
		t.Fatalf("flows %v, want the coordinator's only", p.flows)
	}
	// The relay's own observation makes it sequential: the offer is the
	// NAT's address, next ports.
	p.observe(ev(relay, "", "/ip4/198.51.100.11/tcp/4832", "/ip4/5.6.7.8/tcp/30001", 4))
	for _, a := range p.publicAddrs() {
		if ip, _ := a.ValueForProtocol(ma.P_IP4); ip != "5.6.7.8" {
			t.Errorf("offered %v: not the address the trusted observers saw", a)
		}
	}
	// A trusted observer that sees another public address: no prediction.
	p.observe(ev(relay, "", "/ip4/198.51.100.12/tcp/4832", "/ip4/9.9.9.9/tcp/30003", 5))
	if got := p.publicAddrs(); len(got) != 1 {
		t.Errorf("two public addresses: offered %v, want the latest observation only", got)
	}
}
