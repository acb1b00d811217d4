package coordinator

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

var gateTCP = ma.StringCast("/ip4/127.0.0.1/tcp/4001")

// open takes a place in g on another goroutine; the channel yields the
// scope once it has one.
func open(t *testing.T, g *handshakeGate, addr ma.Multiaddr) <-chan network.ConnManagementScope {
	t.Helper()
	got := make(chan network.ConnManagementScope, 1)
	go func() {
		s, err := g.OpenConnection(network.DirInbound, true, addr)
		if err != nil {
			t.Error(err)
		}
		got <- s
	}()
	return got
}

func waitScope(t *testing.T, ch <-chan network.ConnManagementScope, what string) network.ConnManagementScope {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no place within 10 s", what)
		return nil
	}
}

func TestHandshakeGateWaitsAtItsBound(t *testing.T) {
	g := newHandshakeGate(&network.NullResourceManager{}, 64, time.Minute)
	limit := g.stats().Limit
	scopes := make([]network.ConnManagementScope, 0, limit)
	for range limit {
		scopes = append(scopes, waitScope(t, open(t, g, gateTCP), "within the bound"))
	}
	next := open(t, g, gateTCP)
	// Not an inbound TCP connection: never waits.
	waitScope(t, open(t, g, ma.StringCast("/ip4/127.0.0.1/udp/4001/quic-v1")), "QUIC")
	if s, err := g.OpenConnection(network.DirOutbound, true, gateTCP); err != nil || s == nil {
		t.Fatalf("outbound: %v", err)
	}
	select {
	case <-next:
		t.Fatalf("a connection past the bound of %d got a place", limit)
	case <-time.After(50 * time.Millisecond): // the absence of an event: bounded, not a wait for one
	}
	if st := g.stats(); st.InFlight != limit || st.Waited != 1 {
		t.Fatalf("stats %+v: want %d in flight, 1 waited", st, limit)
	}
	// A failed handshake gives its place back without a sample.
	scopes[0].Done()
	s := waitScope(t, next, "after a place was given back")
	if st := g.stats(); st.Samples != 0 {
		t.Fatalf("a handshake that ended unidentified was sampled: %+v", st)
	}
	// Identified: a sample; Done after it gives nothing back twice.
	if err := s.SetPeer(peer.ID("x")); err != nil {
		t.Fatal(err)
	}
	s.Done()
	if st := g.stats(); st.Samples != 1 || st.InFlight != limit-1 {
		t.Fatalf("stats %+v: want 1 sample, %d in flight", st, limit-1)
	}
}

func TestHandshakeGateHoldIsBounded(t *testing.T) {
	g := newHandshakeGate(&network.NullResourceManager{}, 64, 20*time.Millisecond)
	limit := g.stats().Limit
	for range limit {
		waitScope(t, open(t, g, gateTCP), "within the bound") // never identified, never done
	}
	// Each place comes back after the hold: a stranger's silent
	// connections delay the next one by the hold, no more.
	waitScope(t, open(t, g, gateTCP), "past the hold")
	if st := g.stats(); st.Samples != 0 || st.Limit != limit {
		t.Fatalf("silent connections moved the bound: %+v", st)
	}
}

func TestHandshakeGateCloseLetsWaitersThrough(t *testing.T) {
	g := newHandshakeGate(&network.NullResourceManager{}, 64, time.Minute)
	for range g.stats().Limit {
		waitScope(t, open(t, g, gateTCP), "within the bound")
	}
	next := open(t, g, gateTCP)
	g.close()
	waitScope(t, next, "after close")
}

// The bound grows while handshakes take what they take alone, and shrinks
// when they take several times that (CPU queueing), within [GOMAXPROCS or
// 2, MaxHandshakes].
func TestHandshakeGateAdapts(t *testing.T) {
	g := newHandshakeGate(&network.NullResourceManager{}, 256, time.Minute)
	start := g.stats().Limit
	now := time.Unix(1_000_000, 0)
	g.mu.Lock()
	for range 500 {
		g.adapt(2*time.Millisecond, now)
		now = now.Add(time.Millisecond)
	}
	grown := int(g.limit)
	for range 500 {
		g.adapt(40*time.Millisecond, now) // 20× the unloaded handshake
		now = now.Add(time.Millisecond)
	}
	shrunk := int(g.limit)
	g.mu.Unlock()
	if grown != 256 {
		t.Fatalf("bound %d after fast handshakes, want the maximum 256 (started at %d)", grown, start)
	}
	if shrunk > int(2*g.min) {
		t.Fatalf("bound %d after slow handshakes, want near the minimum %v", shrunk, g.min)
	}
	// The baseline is the least sample of the last two windows: a storm
	// longer than that re-learns it from its own samples.
	g.mu.Lock()
	for range 100 {
		g.adapt(40*time.Millisecond, now)
		now = now.Add(gateWindow)
	}
	relearned := int(g.limit)
	g.mu.Unlock()
	if relearned <= shrunk {
		t.Fatalf("bound %d after a window of steady 40 ms handshakes: the old baseline held it down (was %d)", relearned, shrunk)
	}
}
