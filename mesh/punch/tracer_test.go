package punch_test

import (
	"context"
	"crypto/rand"
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
	"github.com/jumpmesh/jumpmesh/mesh/punch"
)

// attempt is one call of Tracer.Attempt.
type attempt struct {
	remote peer.ID
	how    string
	n      int
	err    error
}

// done is one call of Tracer.Done.
type done struct {
	remote peer.ID
	direct bool
	tries  int
}

// chanTracer hands every call to the test. It never blocks, as a Tracer
// must not: the buffers hold more than a punch makes.
type chanTracer struct {
	attempts chan attempt
	dones    chan done
}

func newChanTracer() *chanTracer {
	return &chanTracer{attempts: make(chan attempt, 64), dones: make(chan done, 8)}
}

func (t *chanTracer) Attempt(remote peer.ID, how string, n int, _, _ time.Duration, err error) {
	select {
	case t.attempts <- attempt{remote, how, n, err}:
	default:
	}
}

func (t *chanTracer) Done(remote peer.ID, direct bool, tries int) {
	select {
	case t.dones <- done{remote, direct, tries}:
	default:
	}
}

func newHost(t *testing.T, cfg mesh.HostConfig) host.Host {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Key = key
	cfg.ListenAddrs = []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")}
	h, err := mesh.NewHost(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// relayedPair starts a relay, a peer that reserves on it and runs a
// Puncher traced by tr, and a console that connects to the peer through
// the relay's circuit. It returns the console's ID.
func relayedPair(t *testing.T, tr punch.Tracer) peer.ID {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	relayHost := newHost(t, mesh.HostConfig{ResourceManager: &network.NullResourceManager{}})
	svc, err := relayv2.New(relayHost, relayv2.WithInfiniteLimits())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	relayInfo := peer.AddrInfo{ID: relayHost.ID(), Addrs: relayHost.Addrs()}

	peerHost := newHost(t, mesh.HostConfig{RelayClient: true, Puncher: true})
	p, err := punch.Start(peerHost, func(id peer.ID) bool { return id == relayHost.ID() }, nil, punch.WithTracer(tr))
	if err != nil {
		t.Fatal(err)
	}
	// Before the hosts close (cleanups run last first): the punch's
	// goroutines end before the host they use does.
	t.Cleanup(p.Close)
	if err := peerHost.Connect(ctx, relayInfo); err != nil {
		t.Fatalf("peer to relay: %v", err)
	}
	if _, err := client.Reserve(ctx, peerHost, relayInfo); err != nil {
		t.Fatalf("reserving on the relay: %v", err)
	}

	console := newHost(t, mesh.HostConfig{RelayClient: true})
	circuit := ma.StringCast("/p2p/" + relayHost.ID().String() + "/p2p-circuit")
	var viaRelay []ma.Multiaddr
	for _, a := range relayHost.Addrs() {
		viaRelay = append(viaRelay, a.Encapsulate(circuit))
	}
	cctx := network.WithAllowLimitedConn(ctx, "test: through the relay")
	if err := console.Connect(cctx, peer.AddrInfo{ID: peerHost.ID(), Addrs: viaRelay}); err != nil {
		t.Fatalf("console to peer through the relay: %v", err)
	}
	for _, c := range console.Network().ConnsToPeer(peerHost.ID()) {
		if !mesh.IsCircuit(c.RemoteMultiaddr()) {
			t.Fatalf("console reached the peer directly (%s), not through the relay", c.RemoteMultiaddr())
		}
	}
	return console.ID()
}

// TestTracerSeesTheFirstAttempt: a console's relayed connection makes the
// peer's Puncher try at once, and the tracer hears of it. On loopback the
// peer has no public address, so the first try is a hole punch that fails
// before any exchange.
func TestTracerSeesTheFirstAttempt(t *testing.T) {
	tr := newChanTracer()
	console := relayedPair(t, tr)
	select {
	case a := <-tr.attempts:
		if a.n != 1 || a.how != "hole punch" || a.err == nil || a.remote != console {
			t.Fatalf("first attempt: n %d, how %q, err %v, remote %s; want 1, hole punch, an error, the console %s", a.n, a.how, a.err, a.remote, console)
		}
		t.Logf("attempt 1: %v", a.err)
	case <-time.After(10 * time.Second):
		t.Fatal("the tracer heard of no attempt within 10 s of the relayed connection")
	}
}

// TestTracerSeesThePuncherGiveUp: every try is reported in order, then
// Done once, not direct, with the number of tries (6, about 8 s of
// backoff).
func TestTracerSeesThePuncherGiveUp(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the whole backoff (about 8 s)")
	}
	tr := newChanTracer()
	console := relayedPair(t, tr)
	deadline := time.After(30 * time.Second)
	for n := 1; n <= 6; n++ {
		select {
		case a := <-tr.attempts:
			if a.n != n || a.err == nil || a.remote != console {
				t.Fatalf("attempt %d: n %d, how %q, err %v, remote %s", n, a.n, a.how, a.err, a.remote)
			}
		case d := <-tr.dones:
			t.Fatalf("Done %+v before attempt %d", d, n)
		case <-deadline:
			t.Fatalf("no attempt %d within 30 s", n)
		}
	}
	select {
	case d := <-tr.dones:
		if d.direct || d.tries != 6 || d.remote != console {
			t.Fatalf("Done: %+v; want not direct after 6 tries, for the console %s", d, console)
		}
	case <-deadline:
		t.Fatal("no Done within 30 s")
	}
	select {
	case a := <-tr.attempts:
		t.Fatalf("an attempt after Done: %+v", a)
	default:
	}
}
