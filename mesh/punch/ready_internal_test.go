package punch

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
)

// connectedPair is a host with a Puncher and a remote host connected to it.
func connectedPair(t *testing.T) (*Puncher, *remoteHost) {
	t.Helper()
	h, _ := quicTestHost(t)
	r, _ := quicTestHost(t)
	p, err := Start(h, func(peer.ID) bool { return false }, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Connect(ctx, peer.AddrInfo{ID: r.ID(), Addrs: r.Addrs()}); err != nil {
		t.Fatal(err)
	}
	return p, &remoteHost{r.ID(), func(f network.StreamHandler) { r.SetStreamHandler(holepunch.Protocol, f) }}
}

type remoteHost struct {
	id     peer.ID
	handle func(network.StreamHandler)
}

// TestPunchStreamWaitsForTheRemotesService: a remote whose hole-punch
// service is not up yet (libp2p sets its handler once its host knows a
// public address: a console that was reached within its first second) is
// asked again, and the attempt goes on once it answers — the first
// refusal used to count as a failed attempt, and a udp-blocked console
// then stayed relayed (the lab's NAT grid, stop 23).
func TestPunchStreamWaitsForTheRemotesService(t *testing.T) {
	p, r := connectedPair(t)
	got := make(chan struct{}, 1)
	up := make(chan time.Time, 1)
	time.AfterFunc(600*time.Millisecond, func() {
		up <- time.Now()
		r.handle(func(s network.Stream) {
			defer s.Close()
			if _, err := s.Read(make([]byte, 1)); err == nil {
				got <- struct{}{}
			}
		})
	})
	s, err := p.openPunchStream(r.id)
	if err != nil {
		t.Fatalf("the stream, after the remote's service came up: %v", err)
	}
	defer s.Close()
	select {
	case <-up:
	default:
		t.Fatal("opened a DCUtR stream before the remote spoke DCUtR")
	}
	if _, err := s.Write([]byte{0}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the remote's handler never got the stream")
	}
}

// TestPunchStreamGivesUpOnARemoteWithoutDCUtR: a remote that never
// speaks DCUtR costs punchReadyWait, then the attempt fails saying why.
func TestPunchStreamGivesUpOnARemoteWithoutDCUtR(t *testing.T) {
	p, r := connectedPair(t)
	t0 := time.Now()
	_, err := p.openPunchStream(r.id)
	if err == nil || !strings.Contains(err.Error(), "did not speak DCUtR") {
		t.Fatalf("err %v, want: the remote did not speak DCUtR", err)
	}
	if took := time.Since(t0); took < punchReadyWait {
		t.Fatalf("gave up after %s, before punchReadyWait (%s)", took, punchReadyWait)
	}
}

// TestPunchStreamDoesNotWaitOnAnotherError: an error other than "not
// supported" (no connection: the relayed one ended) fails at once.
func TestPunchStreamDoesNotWaitOnAnotherError(t *testing.T) {
	p, _ := connectedPair(t)
	other, _ := quicTestHost(t)
	t0 := time.Now()
	if _, err := p.openPunchStream(other.ID()); err == nil {
		t.Fatal("opened a stream to a host it has no connection to")
	}
	if took := time.Since(t0); took >= punchReadyWait {
		t.Fatalf("took %s to fail without a connection", took)
	}
}
