package reserve_test

import (
	"context"
	"crypto/rand"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/goleak"

	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/reserve"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/ipfs/go-log/v2/writer.(*MirrorWriter).logRoutine"))
}

func newHost(t *testing.T, cfg mesh.HostConfig) host.Host {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Key = key
	cfg.ListenAddrs = append(cfg.ListenAddrs, ma.StringCast("/ip4/127.0.0.1/tcp/0"))
	h, err := mesh.NewHost(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// allow is a relay ACL that admits reservations only while open is set.
type allow struct{ open atomic.Bool }

func (a *allow) AllowReserve(peer.ID, ma.Multiaddr) bool          { return a.open.Load() }
func (a *allow) AllowConnect(peer.ID, ma.Multiaddr, peer.ID) bool { return true }

// testRelay is a circuit relay v2 service on loopback, as the site's
// relays run it (no limits), admitting what acl admits (nil: everyone).
type testRelay struct {
	host.Host
	svc *relayv2.Relay
}

func newRelay(t *testing.T, acl relayv2.ACLFilter) *testRelay {
	t.Helper()
	h := newHost(t, mesh.HostConfig{ResourceManager: &network.NullResourceManager{}})
	opts := []relayv2.Option{relayv2.WithInfiniteLimits()}
	if acl != nil {
		opts = append(opts, relayv2.WithACL(acl))
	}
	svc, err := relayv2.New(h, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	return &testRelay{Host: h, svc: svc}
}

// p2pAddrs are the relay's addresses ending in /p2p/<relay>, as the
// coordinator lists relays.
func (r *testRelay) p2pAddrs(t *testing.T) []ma.Multiaddr {
	t.Helper()
	out, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: r.ID(), Addrs: r.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// heldLog records every call of Config.Held.
type heldLog struct {
	mu    sync.Mutex
	calls [][]peer.ID
}

func (l *heldLog) record(held []peer.ID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, held)
}

func (l *heldLog) history() [][]peer.ID {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.calls)
}

// last is the set Held heard last (nil before any call).
func (l *heldLog) last() []peer.ID {
	if h := l.history(); len(h) > 0 {
		return h[len(h)-1]
	}
	return nil
}

// running starts a keeper for h and runs it until the test ends; the
// returned stop ends Run and waits for it.
func running(t *testing.T, h host.Host, cfg reserve.Config) (*reserve.Keeper, func()) {
	t.Helper()
	k := reserve.New(h, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); k.Run(ctx) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return k, stop
}

func sortedIDs(ids ...peer.ID) []peer.ID {
	out := slices.Clone(ids)
	slices.SortFunc(out, func(a, b peer.ID) int { return strings.Compare(a.String(), b.String()) })
	return out
}

// TestKeeperHoldsTwoAndIsReachableThroughThem: given three relays, the
// keeper reserves on the first two (in the order given), Held hears them,
// CircuitAddrs names exactly those two, and another host reaches the
// keeper's host through such an address, over the relay.
func TestKeeperHoldsTwoAndIsReachableThroughThem(t *testing.T) {
	r1, r2, r3 := newRelay(t, nil), newRelay(t, nil), newRelay(t, nil)
	h := newHost(t, mesh.HostConfig{RelayClient: true, Puncher: true, ListenAddrs: []ma.Multiaddr{ma.StringCast("/p2p-circuit")}})
	var log heldLog
	k, _ := running(t, h, reserve.Config{Held: log.record})
	var relays []ma.Multiaddr
	for _, r := range []*testRelay{r1, r2, r3} {
		relays = append(relays, r.p2pAddrs(t)...)
	}
	if err := k.SetRelays(relays); err != nil {
		t.Fatal(err)
	}
	want := sortedIDs(r1.ID(), r2.ID())
	coordinatortest.Eventually(t, 20*time.Second, "reservations on the first two relays", func() bool { return slices.Equal(log.last(), want) })
	if !slices.Equal(k.Held(), want) {
		t.Errorf("Held() %v, want %v", k.Held(), want)
	}
	for _, r := range []*testRelay{r1, r2, r3} {
		if !k.IsRelay(r.ID()) {
			t.Errorf("IsRelay(%s) false for a relay it was given", r.ID())
		}
	}
	if k.IsRelay(h.ID()) {
		t.Error("IsRelay true for a host that is no relay")
	}
	circuits := k.CircuitAddrs()
	via := map[string]bool{}
	for _, a := range circuits {
		if !mesh.IsCircuit(a) {
			t.Errorf("circuit address %s has no /p2p-circuit", a)
		}
		if _, err := a.ValueForProtocol(ma.P_TCP); err != nil {
			t.Errorf("circuit address %s is not over TCP (the relays have TCP addresses)", a)
		}
		relay, err := a.ValueForProtocol(ma.P_P2P)
		if err != nil {
			t.Fatalf("circuit address %s names no relay", a)
		}
		via[relay] = true
	}
	if len(via) != 2 || !via[r1.ID().String()] || !via[r2.ID().String()] {
		t.Fatalf("circuit addresses %v, want through %s and %s", circuits, r1.ID(), r2.ID())
	}

	// Another host reaches h at a circuit address alone, through the relay.
	other := newHost(t, mesh.HostConfig{RelayClient: true})
	target := circuits[0].Encapsulate(ma.StringCast("/p2p/" + h.ID().String()))
	info, err := peer.AddrInfoFromP2pAddr(target)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := other.Connect(network.WithAllowLimitedConn(ctx, "test"), *info); err != nil {
		t.Fatalf("reaching the keeper's host at %s: %v", target, err)
	}
	for _, c := range other.Network().ConnsToPeer(h.ID()) {
		if !mesh.IsCircuit(c.RemoteMultiaddr()) {
			t.Fatalf("connected directly (%s), not through the relay", c.RemoteMultiaddr())
		}
	}
}

// TestKeeperRetriesARefusal: a relay that refuses the reservation (it does
// not know the host yet) is asked again soon, without a poke, and the
// keeper holds a reservation once the relay admits it.
func TestKeeperRetriesARefusal(t *testing.T) {
	acl := &allow{}
	r := newRelay(t, acl)
	h := newHost(t, mesh.HostConfig{RelayClient: true, Puncher: true})
	var log heldLog
	k, _ := running(t, h, reserve.Config{Held: log.record})
	if err := k.SetRelays(r.p2pAddrs(t)); err != nil {
		t.Fatal(err)
	}
	// The refusal comes back at once; give the first attempt time to be made.
	coordinatortest.Eventually(t, 10*time.Second, "the relay connected", func() bool { return h.Network().Connectedness(r.ID()) == network.Connected })
	if len(k.Held()) != 0 || len(k.CircuitAddrs()) != 0 {
		t.Fatalf("held %v, circuits %v on a relay that refuses", k.Held(), k.CircuitAddrs())
	}
	acl.open.Store(true)
	coordinatortest.Eventually(t, 15*time.Second, "a reservation once the relay admits the host", func() bool { return slices.Equal(log.last(), []peer.ID{r.ID()}) })
}

// TestKeeperReservesAgainWhenTheConnectionEnds: a reservation lives as long
// as the connection to its relay. When the relay closes it (as a restart
// does) the keeper drops the reservation — Held hears the empty set — and
// reserves again at once.
func TestKeeperReservesAgainWhenTheConnectionEnds(t *testing.T) {
	r := newRelay(t, nil)
	h := newHost(t, mesh.HostConfig{RelayClient: true, Puncher: true})
	var log heldLog
	k, _ := running(t, h, reserve.Config{Held: log.record})
	if err := k.SetRelays(r.p2pAddrs(t)); err != nil {
		t.Fatal(err)
	}
	one := []peer.ID{r.ID()}
	coordinatortest.Eventually(t, 15*time.Second, "a reservation", func() bool { return slices.Equal(log.last(), one) })
	before := len(log.history())
	if err := r.Network().ClosePeer(h.ID()); err != nil {
		t.Fatal(err)
	}
	// Within the first retry (1 s), far before the periodic check (30 s).
	coordinatortest.Eventually(t, 10*time.Second, "the reservation dropped and made again", func() bool {
		calls := log.history()[before:]
		dropped := slices.IndexFunc(calls, func(c []peer.ID) bool { return len(c) == 0 })
		return dropped >= 0 && slices.ContainsFunc(calls[dropped:], func(c []peer.ID) bool { return slices.Equal(c, one) })
	})
	if !slices.Equal(k.Held(), one) {
		t.Fatalf("held %v after reserving again", k.Held())
	}
}

// TestKeeperMax: Config.Max bounds the reservations held.
func TestKeeperMax(t *testing.T) {
	r1, r2 := newRelay(t, nil), newRelay(t, nil)
	h := newHost(t, mesh.HostConfig{RelayClient: true, Puncher: true})
	var log heldLog
	k, stop := running(t, h, reserve.Config{Max: 1, Held: log.record})
	if err := k.SetRelays(append(r1.p2pAddrs(t), r2.p2pAddrs(t)...)); err != nil {
		t.Fatal(err)
	}
	coordinatortest.Eventually(t, 15*time.Second, "a reservation", func() bool { return len(log.last()) > 0 })
	k.Poke()
	stop() // Run ends: nothing more is reserved
	if held := k.Held(); !slices.Equal(held, []peer.ID{r1.ID()}) {
		t.Fatalf("held %v with Max 1, want the first relay %s only", held, r1.ID())
	}
}

// TestKeeperSetRelaysRefusesABadList: an address without /p2p/ cannot name
// a relay; the list is refused whole and the old one kept.
func TestKeeperSetRelaysRefusesABadList(t *testing.T) {
	r := newRelay(t, nil)
	h := newHost(t, mesh.HostConfig{RelayClient: true})
	k := reserve.New(h, reserve.Config{})
	if err := k.SetRelays(r.p2pAddrs(t)); err != nil {
		t.Fatal(err)
	}
	if err := k.SetRelays([]ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/4001")}); err == nil {
		t.Fatal("a relay address without /p2p/ was taken")
	}
	if !k.IsRelay(r.ID()) {
		t.Fatal("the refused list replaced the old one")
	}
	if len(k.Held()) != 0 || len(k.CircuitAddrs()) != 0 {
		t.Fatal("a keeper that never ran holds reservations")
	}
}
