package console_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	libp2ppeer "github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/mesh/channel"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Forwards on bulk connections (issue 17): console.Forward and
// peer.ServeForward with ForwardOpen.bulk, over loopback libp2p hosts.

func bulkForwardOpen(port int) *pb.ChannelOpen {
	return &pb.ChannelOpen{Kind: &pb.ChannelOpen_Forward{Forward: &pb.ForwardOpen{Host: "127.0.0.1", Port: uint32(port), Bulk: true}}}
}

// echoTarget echoes each connection until its half-close, then closes.
func echoTarget(tb testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_, _ = io.Copy(c, c)
				_ = c.(*net.TCPConn).CloseWrite()
				_ = c.Close()
			}()
		}
	}()
	return portOf(tb, ln.Addr().String())
}

// clientPair is a local client connection and the end a forward carries.
func clientPair(tb testing.TB) (client, carried *net.TCPConn) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close(); _ = s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// echoes sends n random bytes on client, half-closes and checks that the
// same come back before the end.
func echoes(t *testing.T, client *net.TCPConn, n int) {
	t.Helper()
	msg := make([]byte, n)
	_, _ = rand.Read(msg)
	go func() { _, _ = client.Write(msg); _ = client.CloseWrite() }()
	_ = client.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := io.ReadAll(client)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo: %d bytes of %d back, %v", len(got), n, err)
	}
}

func TestForwardCarriesABulkConnection(t *testing.T) {
	p := newChannelPair(t)
	target := echoTarget(t)
	before := console.BulkForwards()
	ch := p.open(t, bulkForwardOpen(target))
	opened := ch.BytesWritten()
	client, carried := clientPair(t)
	done := make(chan error, 1)
	go func() { _, _, err := console.Forward(context.Background(), ch, carried); done <- err }()
	echoes(t, client, 3<<20)
	if err := <-done; err != nil {
		t.Fatalf("forward: %v", err)
	}
	if n := console.BulkForwards() - before; n != 1 {
		t.Fatalf("%d forwards on bulk connections, want 1", n)
	}
	// The choice byte on the channel, the rest on the bulk connection.
	if got := ch.BytesWritten() - opened; got != 1+3<<20 {
		t.Fatalf("the channel counts %d bytes sent, want %d", got, 1+3<<20)
	}
}

// TestForwardBulkOfferRefusesOthers is the attack test of the peer's bulk
// listener in place: while a forward's offer is pending, a connection with
// the ticket seen on the wire but not the secret, and one with a made-up
// offer, are refused; the console with the offer gets through; a declined
// offer is withdrawn at once.
func TestForwardBulkOfferRefusesOthers(t *testing.T) {
	p := newChannelPair(t)
	target := echoTarget(t)
	ch := p.open(t, bulkForwardOpen(target))
	offer, addr, err := ch.ReadStatusOffer()
	if err != nil || offer == nil {
		t.Fatalf("no bulk offer on a direct loopback connection: %v", err)
	}
	dial := func(o channel.BulkOffer) (*channel.BulkConn, error) {
		tc, err := net.Dial("tcp", addr.String())
		if err != nil {
			return nil, err // once no offer is pending the listener is closed
		}
		return channel.DialBulk(tc, o)
	}
	stolen := channel.NewBulkOffer()
	stolen.Ticket = offer.Ticket
	if _, err := dial(stolen); err == nil {
		t.Fatal("the peer took a bulk connection with the ticket but another secret")
	}
	if _, err := dial(channel.NewBulkOffer()); err == nil {
		t.Fatal("the peer took a bulk connection with a made-up offer")
	}
	bc, err := dial(*offer)
	if err != nil {
		t.Fatalf("the console with the offer: %v", err)
	}
	if _, err := ch.Write([]byte{channel.BulkChosen}); err != nil {
		t.Fatal(err)
	}
	client, carried := clientPair(t)
	done := make(chan error, 1)
	go func() { _, _, err := bc.Splice(context.Background(), carried); done <- err }()
	echoes(t, client, 1<<20)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	_ = ch.Close()

	// Declined: the channel carries the bytes and the offer is gone.
	ch = p.open(t, bulkForwardOpen(target))
	offer, addr, err = ch.ReadStatusOffer()
	if err != nil || offer == nil {
		t.Fatalf("second offer: %v", err)
	}
	if _, err := ch.Write([]byte{channel.BulkDeclined}); err != nil {
		t.Fatal(err)
	}
	client, carried = clientPair(t)
	go func() { _, _, err := ch.Splice(context.Background(), carried); done <- err }()
	echoes(t, client, 1<<20)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := dial(*offer); err == nil {
		t.Fatal("a declined offer still opens a bulk connection")
	}
}

// TestForwardFallsBackWhenTheBulkListenerIsUnreachable: a peer offers a
// bulk connection the console cannot reach (here: a closed port); the
// console says so and the forward runs on the channel.
func TestForwardFallsBackWhenTheBulkListenerIsUnreachable(t *testing.T) {
	target := echoTarget(t)
	ph, chost := newLoopbackHost(t), newLoopbackHost(t)
	t.Cleanup(func() { _ = chost.Close(); _ = ph.Close() })
	closed := portOf(t, func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}())
	choices := make(chan byte, 1)
	ph.SetStreamHandler(channel.Protocol, func(st network.Stream) {
		ch, _, err := channel.Accept(st)
		if err != nil {
			return
		}
		defer ch.Close()
		_ = ch.Ready("s1", nil)
		conn, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(target)))
		if err != nil {
			_ = ch.SendStatus(err)
			return
		}
		_ = ch.SendBulkOffer(channel.NewBulkOffer(), &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: closed})
		var c [1]byte
		if _, err := io.ReadFull(ch, c[:]); err != nil {
			return
		}
		choices <- c[0]
		_, _, _ = ch.Splice(context.Background(), conn)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := chost.Connect(ctx, libp2ppeer.AddrInfo{ID: ph.ID(), Addrs: ph.Addrs()}); err != nil {
		t.Fatal(err)
	}
	ch, _, err := channel.Open(ctx, chost, ph.ID(), bulkForwardOpen(target))
	if err != nil {
		t.Fatal(err)
	}
	before := console.BulkForwards()
	client, carried := clientPair(t)
	done := make(chan error, 1)
	go func() { _, _, err := console.Forward(context.Background(), ch, carried); done <- err }()
	echoes(t, client, 1<<20)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if c := <-choices; c != channel.BulkDeclined {
		t.Fatalf("the console chose %d, want declined", c)
	}
	if console.BulkForwards() != before {
		t.Fatal("counted a bulk forward")
	}
}
