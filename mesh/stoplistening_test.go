package mesh_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh"
)

// StopListening closes a host's listeners and leaves its connections:
// a new connection is refused, one made before carries on.
func TestStopListeningKeepsConnections(t *testing.T) {
	server, client := coordinatortest.LoopbackHost(t), coordinatortest.LoopbackHost(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := client.Connect(ctx, peer.AddrInfo{ID: server.ID(), Addrs: server.Addrs()}); err != nil {
		t.Fatal(err)
	}
	listening := server.Network().ListenAddresses()
	mesh.StopListening(server)
	if got := server.Network().ListenAddresses(); len(got) != 0 {
		t.Errorf("still listening at %v", got)
	}
	for _, a := range listening {
		na, err := manet.ToNetAddr(a)
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.DialTimeout("tcp", na.String(), 5*time.Second)
		if err == nil {
			c.Close()
			t.Fatalf("a new connection to %s was accepted", na)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("a new connection to %s: %v, want it refused", na, err)
		}
	}
	if got := server.Network().Connectedness(client.ID()); got != network.Connected {
		t.Fatalf("the connection made before is %v", got)
	}
	// The connection still carries a round trip: the server answers a
	// stream's protocol choice (here: not one it serves).
	s, err := client.NewStream(ctx, server.ID(), "/jumpmesh/test/none")
	if err == nil {
		s.Reset()
		t.Fatal("a stream of an unknown protocol was opened")
	}
	if !strings.Contains(err.Error(), "protocols not supported") {
		t.Fatalf("a stream on the connection made before: %v, want the server's answer", err)
	}
	mesh.StopListening(nil) // a daemon that failed before its host
}
