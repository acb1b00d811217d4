package tunnel_test

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/tunnel"
)

// slowLink is a TCP proxy on loopback in front of to that holds every new
// connection's bytes for delay before passing them on: a jumpoint whose
// handshake takes longer than a dial's budget, as when hundreds of peers
// connect to it at once.
func slowLink(t *testing.T, to string, delay time.Duration) ma.Multiaddr {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				up, err := net.Dial("tcp", to)
				if err != nil {
					c.Close()
					return
				}
				mu.Lock()
				conns = append(conns, c, up)
				mu.Unlock()
				<-time.After(delay) // the slow link, not a wait for an event
				wg.Go(func() { io.Copy(up, c); up.Close() })
				io.Copy(c, up)
				c.Close()
			})
		}
	})
	a, err := manet.FromNetAddr(l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestDialFinishesTheJumpointConnectionPastTheDeadline: a tunnel dial whose
// context ends while the connection to the jumpoint is still being set up
// fails (jumpoint_unreachable), but the connection is finished anyway, so
// the next dial finds it and succeeds. Before, the deadline cut the
// handshake and every retry started over, which is how most of 2,000
// peers connecting at once through one jumpoint failed again and again.
func TestDialFinishesTheJumpointConnectionPastTheDeadline(t *testing.T) {
	j := newHost(t, mesh.HostConfig{ListenAddrs: loopbackTCP()})
	srv := tunnel.Serve(j, tunnel.Config{Authorize: allowAll})
	t.Cleanup(srv.Close)
	_, jaddr, err := manet.DialArgs(j.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	caller := newHost(t, mesh.HostConfig{})
	caller.Peerstore().AddAddrs(j.ID(), []ma.Multiaddr{slowLink(t, jaddr, 300*time.Millisecond)}, time.Hour)
	target := echoServer(t)

	short, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if c, err := tunnel.Dial(short, caller, j.ID(), &pb.TunnelOpen{Target: target}); err == nil {
		c.Close()
		t.Fatal("a dial of 100 ms went through a link that holds every connection 300 ms")
	} else if !catalog.HasCode(err, catalog.CodeJumpointUnreachable) || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("dial past its deadline: %v, want jumpoint_unreachable with the deadline", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for caller.Network().Connectedness(j.ID()) != network.Connected {
		if time.Now().After(deadline) {
			t.Fatal("the connection to the jumpoint was given up with the dial's deadline")
		}
		<-time.After(20 * time.Millisecond)
	}
	ctx, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond+tunnel.OpenTimeout)
	defer cancel2()
	c, err := tunnel.Dial(ctx, caller, j.ID(), &pb.TunnelOpen{Target: target})
	if err != nil {
		t.Fatalf("dial over the finished connection: %v", err)
	}
	defer c.Close()
	if n := len(caller.Network().ConnsToPeer(j.ID())); n != 1 {
		t.Errorf("%d connections to the jumpoint, want the one finished after the first dial", n)
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo through the tunnel: %q, %v", buf, err)
	}
}

// TestDialToADeadJumpointFailsAtOnce: a jumpoint that refuses the
// connection still fails the dial at once (the connection attempt that may
// outlive a dial does not hold a refused one).
func TestDialToADeadJumpointFailsAtOnce(t *testing.T) {
	caller := newHost(t, mesh.HostConfig{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := manet.FromNetAddr(l.Addr())
	l.Close() // nothing listens there now: connection refused
	gone := newHost(t, mesh.HostConfig{})
	caller.Peerstore().AddAddrs(gone.ID(), []ma.Multiaddr{a}, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	_, err = tunnel.Dial(ctx, caller, gone.ID(), &pb.TunnelOpen{Target: "127.0.0.1:1"})
	if !catalog.HasCode(err, catalog.CodeJumpointUnreachable) {
		t.Fatalf("dial to a dead jumpoint: %v, want jumpoint_unreachable", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("a refused connection took %s to fail the dial", took)
	}
}
