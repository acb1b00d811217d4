package tunnel_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"io"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-msgio/pbio"

	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/tunnel"
)

// linkJumpoint is a tunnel server with a link listener on loopback; seen
// records the peer IDs Authorize was asked about.
type linkJumpoint struct {
	id   peer.ID
	addr string
	srv  *tunnel.Server
	seen chan peer.ID
}

func newLinkJumpoint(t *testing.T, auth tunnel.Authorize, filter tunnel.Authorize, cfg tunnel.Config) *linkJumpoint {
	t.Helper()
	h := newHost(t, mesh.HostConfig{})
	lj := &linkJumpoint{id: h.ID(), seen: make(chan peer.ID, 64)}
	cfg.Authorize = func(remote peer.ID, open *pb.TunnelOpen) error {
		select {
		case lj.seen <- remote:
		default:
		}
		return auth(remote, open)
	}
	lj.srv = tunnel.Serve(h, cfg)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lj.addr = l.Addr().String()
	done := make(chan struct{})
	go func() { defer close(done); lj.srv.ServeLinks(l, filter) }()
	t.Cleanup(func() { lj.srv.Close(); <-done })
	return lj
}

func newKey(t *testing.T) (crypto.PrivKey, peer.ID) {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return k, id
}

func TestLinkCarriesBytesAndNamesTheCaller(t *testing.T) {
	target := echoServer(t)
	lj := newLinkJumpoint(t, allowAll, allowAll, tunnel.Config{})
	key, id := newKey(t)
	c, err := tunnel.DialLink(context.Background(), lj.addr, lj.id, key, []uint32{4242}, &pb.TunnelOpen{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := <-lj.seen; got != id {
		t.Fatalf("authorized as %s, want the key's %s", got, id)
	}
	if c.RemoteAddr().String() != target {
		t.Fatalf("RemoteAddr %s, want the target %s", c.RemoteAddr(), target)
	}
	msg := bytes.Repeat([]byte("link"), 20000)
	go c.Write(msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo through the link: %v", err)
	}
	// Where the caller listens: its own IP (loopback here) with the port it named.
	if addrs := lj.srv.LinkAddrs(id); !slices.Equal(addrs, []string{"127.0.0.1:4242"}) {
		t.Fatalf("LinkAddrs = %v", addrs)
	}
	c.Close()
	coordinatortest.Eventually(t, 10*time.Second, "the link's addresses forgotten", func() bool { return len(lj.srv.LinkAddrs(id)) == 0 })
}

func TestLinkRefusalsReachTheCaller(t *testing.T) {
	target := echoServer(t)
	deny := func(peer.ID, *pb.TunnelOpen) error {
		return catalog.Errorf(catalog.CodePermissionDenied, "(not you)")
	}
	key, _ := newKey(t)
	for name, lj := range map[string]*linkJumpoint{
		"filter":    newLinkJumpoint(t, allowAll, deny, tunnel.Config{}),
		"authorize": newLinkJumpoint(t, deny, allowAll, tunnel.Config{}),
	} {
		_, err := tunnel.DialLink(context.Background(), lj.addr, lj.id, key, nil, &pb.TunnelOpen{Target: target})
		if !catalog.HasCode(err, catalog.CodePermissionDenied) {
			t.Errorf("%s refuses: %v, want permission_denied", name, err)
		}
	}
}

// rawLink speaks the link protocol by hand: it returns the challenge and
// a function that sends an open and reads the reply.
func rawLink(t *testing.T, addr string) (net.Conn, []byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	hello := make([]byte, len(tunnel.LinkMagic)+32)
	if _, err := io.ReadFull(c, hello); err != nil {
		t.Fatal(err)
	}
	return c, hello[len(tunnel.LinkMagic):]
}

func linkReply(t *testing.T, c net.Conn) *pb.TunnelReply {
	t.Helper()
	var r pb.TunnelReply
	if err := pbio.NewDelimitedReader(c, 1<<16).ReadMsg(&r); err != nil {
		return nil // reset
	}
	return &r
}

func sign(t *testing.T, key crypto.PrivKey, j peer.ID, challenge []byte, target string) []byte {
	t.Helper()
	msg := append([]byte(tunnel.LinkDomain), j...)
	msg = append(append(msg, challenge...), target...)
	sig, err := key.Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// The attacks on a link: a stranger on the jumpoint's network without the
// key, a recorded proof replayed, a proof made for another jumpoint or
// another target, another key's signature under a victim's public key,
// garbage. None is authorized; each is told permission_denied or reset.
func TestLinkProofAttacks(t *testing.T) {
	target := echoServer(t)
	var authorized atomic.Int32
	lj := newLinkJumpoint(t, func(peer.ID, *pb.TunnelOpen) error { authorized.Add(1); return nil }, allowAll, tunnel.Config{})
	victim, _ := newKey(t)
	attacker, _ := newKey(t)
	_, other := newKey(t)
	pub := func(k crypto.PrivKey) []byte { b, _ := crypto.MarshalPublicKey(k.GetPublic()); return b }

	c, ch := rawLink(t, lj.addr)
	recorded := &pb.TunnelOpen{Target: target, Link: &pb.LinkAuth{PublicKey: pub(victim), Signature: sign(t, victim, lj.id, ch, target)}}
	// (the honest open itself is not sent: the attacker only saw it)
	c.Close()

	cases := map[string]func(ch []byte) *pb.TunnelOpen{
		"no proof":       func([]byte) *pb.TunnelOpen { return &pb.TunnelOpen{Target: target} },
		"replayed proof": func([]byte) *pb.TunnelOpen { return recorded },
		"proof for another jumpoint": func(ch []byte) *pb.TunnelOpen {
			return &pb.TunnelOpen{Target: target, Link: &pb.LinkAuth{PublicKey: pub(victim), Signature: sign(t, victim, other, ch, target)}}
		},
		"proof for another target": func(ch []byte) *pb.TunnelOpen {
			return &pb.TunnelOpen{Target: target, Link: &pb.LinkAuth{PublicKey: pub(victim), Signature: sign(t, victim, lj.id, ch, "127.0.0.1:1")}}
		},
		"victim's key, attacker's signature": func(ch []byte) *pb.TunnelOpen {
			return &pb.TunnelOpen{Target: target, Link: &pb.LinkAuth{PublicKey: pub(victim), Signature: sign(t, attacker, lj.id, ch, target)}}
		},
		"garbage key": func(ch []byte) *pb.TunnelOpen {
			return &pb.TunnelOpen{Target: target, Link: &pb.LinkAuth{PublicKey: []byte("not a key"), Signature: []byte("x")}}
		},
	}
	for name, open := range cases {
		c, ch := rawLink(t, lj.addr)
		if err := pbio.NewDelimitedWriter(c).WriteMsg(open(ch)); err != nil {
			t.Fatal(err)
		}
		r := linkReply(t, c)
		if r == nil || catalog.Code(r.GetError().GetCode()) != catalog.CodePermissionDenied {
			t.Errorf("%s: reply %v, want permission_denied", name, r)
		}
	}
	// Bytes that are no open at all: reset, nothing authorized.
	c, _ = rawLink(t, lj.addr)
	c.Write(binary.AppendUvarint(nil, 1<<40)) // a declared length far over MaxOpen
	if r := linkReply(t, c); r != nil && r.GetError() == nil {
		t.Errorf("garbage: accepted")
	}
	if n := authorized.Load(); n != 0 {
		t.Fatalf("%d attacks reached Authorize", n)
	}
}

// A stranger who opens connections and never proves anything holds at
// most MaxLinkHandshakes of them; the next caller waits (it is not sent
// away) and is served as soon as one of them closes.
func TestLinkHandshakesAreBounded(t *testing.T) {
	target := echoServer(t)
	lj := newLinkJumpoint(t, allowAll, allowAll, tunnel.Config{MaxLinkHandshakes: 4})
	var idle []net.Conn
	for range 4 {
		c, _ := rawLink(t, lj.addr)
		idle = append(idle, c)
	}
	key, _ := newKey(t)
	done := make(chan error, 1)
	go func() {
		c, err := tunnel.DialLink(context.Background(), lj.addr, lj.id, key, nil, &pb.TunnelOpen{Target: target})
		if err == nil {
			c.Close()
		}
		done <- err
	}()
	// The fifth gets no greeting while four handshakes are in flight.
	fifth, err := net.Dial("tcp", lj.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer fifth.Close()
	_ = fifth.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := fifth.Read(make([]byte, 64)); err == nil {
		t.Fatalf("a caller past the bound got %d bytes of greeting while four handshakes were in flight", n)
	}
	select {
	case err := <-done:
		t.Fatalf("an honest link finished while four handshakes were in flight: %v", err)
	default:
	}
	fifth.Close()
	idle[0].Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the waiting link: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the waiting link was not served after a handshake slot freed")
	}
	for _, c := range idle[1:] {
		c.Close()
	}
}

func TestCloseEndsLinks(t *testing.T) {
	target := echoServer(t)
	lj := newLinkJumpoint(t, allowAll, allowAll, tunnel.Config{})
	key, _ := newKey(t)
	c, err := tunnel.DialLink(context.Background(), lj.addr, lj.id, key, nil, &pb.TunnelOpen{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	lj.srv.Close()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("the link outlived the server")
	}
	if _, err := net.DialTimeout("tcp", lj.addr, 5*time.Second); err == nil {
		t.Fatal("the link port still accepts after Close")
	}
}

// One caller (a compromised peer) holds at most MaxLinksPerPeer links;
// the next is refused with server_busy, and another caller is not held up.
func TestLinksPerPeerAreBounded(t *testing.T) {
	target := echoServer(t)
	lj := newLinkJumpoint(t, allowAll, allowAll, tunnel.Config{MaxLinksPerPeer: 3})
	key, _ := newKey(t)
	dial := func(k crypto.PrivKey) (net.Conn, error) {
		return tunnel.DialLink(context.Background(), lj.addr, lj.id, k, nil, &pb.TunnelOpen{Target: target})
	}
	for range 3 {
		c, err := dial(key)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	if _, err := dial(key); !catalog.HasCode(err, catalog.CodeServerBusy) {
		t.Fatalf("a fourth link of one caller: %v, want server_busy", err)
	}
	other, _ := newKey(t)
	c, err := dial(other)
	if err != nil {
		t.Fatalf("another caller: %v", err)
	}
	c.Close()
}
