package punch

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
)

// TestDropStaleDirect: a direct connection whose remote answers a ping is
// kept; one whose remote no longer answers (a console gone without
// closing it) is closed, so that the next relayed connection punches.
func TestDropStaleDirect(t *testing.T) {
	h, _ := quicTestHost(t)
	remote, _ := quicTestHost(t)
	p, err := Start(h, func(peer.ID) bool { return false }, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Connect(ctx, peer.AddrInfo{ID: remote.ID(), Addrs: remote.Addrs()}); err != nil {
		t.Fatal(err)
	}
	p.dropStaleDirect(remote.ID())
	if !p.direct(remote.ID()) {
		t.Fatal("a direct connection that answers was closed")
	}
	remote.RemoveStreamHandler(ping.ID) // it stops answering
	p.dropStaleDirect(remote.ID())
	if p.direct(remote.ID()) {
		t.Fatal("a direct connection that does not answer was kept")
	}
}
