package tunnel_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/tunnel"
)

func newHost(t *testing.T, cfg mesh.HostConfig) host.Host {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Key = key
	h, err := mesh.NewHost(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func loopbackTCP() []ma.Multiaddr { return []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")} }

// echoServer accepts TCP connections on loopback and echoes them; it
// closes its write side when the client closes its own.
func echoServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
			})
		}
	})
	return l.Addr().String()
}

// pair is a jumpoint host serving tunnels and a caller host connected to it.
func pair(t *testing.T, auth tunnel.Authorize, cfg tunnel.Config) (caller host.Host, j host.Host, srv *tunnel.Server) {
	t.Helper()
	j = newHost(t, mesh.HostConfig{ListenAddrs: loopbackTCP()})
	cfg.Authorize = auth
	srv = tunnel.Serve(j, cfg)
	t.Cleanup(srv.Close)
	caller = newHost(t, mesh.HostConfig{})
	if err := caller.Connect(context.Background(), peer.AddrInfo{ID: j.ID(), Addrs: j.Addrs()}); err != nil {
		t.Fatal(err)
	}
	return caller, j, srv
}

func allowAll(peer.ID, *pb.TunnelOpen) error { return nil }

// TestTunnelCarriesBytesBothWaysAndHalfCloses: what the caller writes
// reaches the target and back, and the caller's half-close reaches the
// target (the control protocol closes its write side first).
func TestTunnelCarriesBytesBothWaysAndHalfCloses(t *testing.T) {
	target := echoServer(t)
	caller, j, srv := pair(t, allowAll, tunnel.Config{})
	c, err := tunnel.Dial(context.Background(), caller, j.ID(), &pb.TunnelOpen{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.RemoteAddr().String(); got != target {
		t.Errorf("RemoteAddr = %s, want %s", got, target)
	}
	msg := bytes.Repeat([]byte("jumpoint "), 100000)
	go func() {
		c.Write(msg)
		c.(interface{ CloseWrite() error }).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echoed %d bytes, want %d equal ones", len(got), len(msg))
	}
	if st := srv.Stats(); st.Total != 1 || st.Bytes < uint64(2*len(msg)) {
		t.Errorf("stats %+v, want one tunnel and ≥ %d bytes", st, 2*len(msg))
	}
}

// TestTunnelRefusalReachesTheCaller: the Authorize error's code is what
// the caller gets, nothing is dialed, and the refusal is counted.
func TestTunnelRefusalReachesTheCaller(t *testing.T) {
	var dialed atomic.Bool
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			dialed.Store(true)
			c.Close()
		}
	}()
	deny := func(remote peer.ID, o *pb.TunnelOpen) error {
		return catalog.Errorf(catalog.CodePermissionDenied, "(%s may not reach %s)", remote, o.GetTarget())
	}
	caller, j, srv := pair(t, deny, tunnel.Config{})
	_, err = tunnel.Dial(context.Background(), caller, j.ID(), &pb.TunnelOpen{Target: l.Addr().String()})
	if !catalog.HasCode(err, catalog.CodePermissionDenied) {
		t.Fatalf("Dial: %v, want permission_denied", err)
	}
	if srv.Stats().Refused != 1 || dialed.Load() {
		t.Errorf("refused %d, dialed %v; want 1, false", srv.Stats().Refused, dialed.Load())
	}
}

// TestTunnelTargetDown: a target nobody listens on is the jumpoint's
// target error, not the jumpoint's.
func TestTunnelTargetDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	caller, j, _ := pair(t, allowAll, tunnel.Config{})
	_, err = tunnel.Dial(context.Background(), caller, j.ID(), &pb.TunnelOpen{Target: closed})
	if !catalog.HasCode(err, catalog.CodeJumpointTarget) {
		t.Fatalf("Dial: %v, want jumpoint_target_unreachable", err)
	}
}

// TestTunnelLimit: past MaxTunnels a caller gets server_busy, and a
// closed tunnel frees its slot.
func TestTunnelLimit(t *testing.T) {
	target := echoServer(t)
	caller, j, _ := pair(t, allowAll, tunnel.Config{MaxTunnels: 1})
	c, err := tunnel.Dial(context.Background(), caller, j.ID(), &pb.TunnelOpen{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tunnel.Dial(context.Background(), caller, j.ID(), &pb.TunnelOpen{Target: target}); !catalog.HasCode(err, catalog.CodeServerBusy) {
		t.Fatalf("second Dial: %v, want server_busy", err)
	}
	c.Close()
	coordinatortest.Eventually(t, 10*time.Second, "the closed tunnel's slot freed", func() bool {
		c2, err := tunnel.Dial(context.Background(), caller, j.ID(), &pb.TunnelOpen{Target: target})
		if err == nil {
			c2.Close()
		}
		return err == nil
	})
}

// TestTunnelOversizedOpenIsDropped: a stranger declaring a huge open
// message is cut off before the jumpoint reads or dials anything.
func TestTunnelOversizedOpenIsDropped(t *testing.T) {
	var asked atomic.Bool
	caller, j, srv := pair(t, func(peer.ID, *pb.TunnelOpen) error { asked.Store(true); return nil }, tunnel.Config{})
	_, err := tunnel.Dial(context.Background(), caller, j.ID(), &pb.TunnelOpen{Target: "127.0.0.1:1", InstallerKey: strings.Repeat("k", tunnel.MaxOpen)})
	if !catalog.HasCode(err, catalog.CodeJumpointUnreachable) {
		t.Fatalf("Dial: %v, want the stream cut (jumpoint_unreachable)", err)
	}
	if asked.Load() || srv.Stats().Refused != 1 {
		t.Errorf("authorize asked %v, refused %d; want false, 1", asked.Load(), srv.Stats().Refused)
	}
}

// TestHostDialsThroughTheJumpoint: a host whose TCP dialer is a
// tunnel.Dialer reaches a libp2p host on the jumpoint's network through
// the jumpoint, end to end secured (the peer IDs match), and has no QUIC.
func TestHostDialsThroughTheJumpoint(t *testing.T) {
	var seen atomic.Int32
	target := newHost(t, mesh.HostConfig{ListenAddrs: loopbackTCP()})
	j := newHost(t, mesh.HostConfig{ListenAddrs: loopbackTCP()})
	srv := tunnel.Serve(j, tunnel.Config{Authorize: func(peer.ID, *pb.TunnelOpen) error { seen.Add(1); return nil }})
	t.Cleanup(srv.Close)
	jaddrs := map[string]bool{}
	for _, a := range j.Addrs() {
		if _, s, err := manet.DialArgs(a); err == nil {
			jaddrs[s] = true
		}
	}
	d := tunnel.NewDialer(func(address string) ([]peer.ID, *pb.TunnelOpen, bool) {
		if jaddrs[address] {
			return nil, nil, false
		}
		return []peer.ID{j.ID()}, &pb.TunnelOpen{}, true
	})
	behind := newHost(t, mesh.HostConfig{TCPDialer: d.ForAddr})
	d.SetHost(behind)
	behind.Peerstore().AddAddrs(j.ID(), j.Addrs(), time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := behind.Connect(ctx, peer.AddrInfo{ID: target.ID(), Addrs: target.Addrs()}); err != nil {
		t.Fatal(err)
	}
	if seen.Load() != 1 || srv.Stats().Open != 1 {
		t.Errorf("authorize asked %d times, %d tunnels open; want 1, 1", seen.Load(), srv.Stats().Open)
	}
	for _, c := range behind.Network().ConnsToPeer(target.ID()) {
		if c.RemotePeer() != target.ID() {
			t.Errorf("connected to %s, want %s", c.RemotePeer(), target.ID())
		}
	}
	quicOnly := newHost(t, mesh.HostConfig{ListenAddrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/udp/0/quic-v1")}})
	if err := behind.Connect(ctx, peer.AddrInfo{ID: quicOnly.ID(), Addrs: quicOnly.Addrs()}); err == nil {
		t.Error("a host with a tunnel dialer reached a QUIC address (it would bypass the jumpoint)")
	}
}

// TestDialerFallsOverToTheNextJumpoint: when the first jumpoint cannot be
// reached, the dialer tries the next; a refusal is final.
func TestDialerFallsOverToTheNextJumpoint(t *testing.T) {
	target := echoServer(t)
	gone := newHost(t, mesh.HostConfig{ListenAddrs: loopbackTCP()})
	goneID, goneAddrs := gone.ID(), gone.Addrs()
	gone.Close()
	caller, j, _ := pair(t, allowAll, tunnel.Config{})
	caller.Peerstore().AddAddrs(goneID, goneAddrs, time.Hour)
	d := tunnel.NewDialer(func(string) ([]peer.ID, *pb.TunnelOpen, bool) {
		return []peer.ID{goneID, j.ID()}, &pb.TunnelOpen{}, true
	})
	d.SetHost(caller)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()

	deny := tunnel.NewDialer(func(string) ([]peer.ID, *pb.TunnelOpen, bool) {
		return []peer.ID{j.ID(), goneID}, &pb.TunnelOpen{}, true
	})
	deny.SetHost(caller)
	_, err = deny.DialContext(ctx, "tcp", "127.0.0.1:0")
	if err == nil || catalog.HasCode(err, catalog.CodeJumpointUnreachable) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial to a bad target: %v, want the first jumpoint's own error", err)
	}
}
