package tunnel_test

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/tunnel"
)

// floodFor writes to c as fast as it can and counts what it reads from c,
// both until deadline; it returns the bytes read.
func floodFor(c net.Conn, deadline time.Time) int64 {
	_ = c.SetDeadline(deadline)
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
	n, _ := io.Copy(io.Discard, c)
	wg.Wait()
	return n
}

// flood is what floodTarget saw: the bytes it read, and when it accepted
// (no byte can cross the tunnel before that).
type flood struct {
	n        int64
	accepted time.Time
}

// floodTarget accepts one connection and floods it for span from its
// accept; what it read comes on the channel.
func floodTarget(t *testing.T, span time.Duration) (string, <-chan flood) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan flood, 1)
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		c, err := l.Accept()
		if err != nil {
			got <- flood{n: -1}
			return
		}
		defer c.Close()
		accepted := time.Now()
		got <- flood{n: floodFor(c, accepted.Add(span)), accepted: accepted}
	})
	return l.Addr().String(), got
}

// TestTunnelRateLimit: with MaxBytesPerSecond set, each direction of a
// flooded tunnel moves about rate × span (plus the bucket's burst) in a
// deadline-bounded transfer, and several times that without the limit.
//
// The bounds are taken over the time bytes could actually flow, from the
// target's accept to the later of the two deadlines, not over the nominal
// span: on a loaded machine the caller's count starts tens of
// milliseconds after the target began flooding, and the limiter rightly
// let those milliseconds' tokens through.
func TestTunnelRateLimit(t *testing.T) {
	const rate = 256 << 10
	const span = time.Second
	type result struct {
		toTarget, toCaller int64
		flowed             time.Duration // accept to the last deadline
	}
	measure := func(cfg tunnel.Config) result {
		target, got := floodTarget(t, span)
		caller, j, _ := pair(t, allowAll, cfg)
		c, err := tunnel.Dial(context.Background(), caller, j.ID(), &pb.TunnelOpen{Target: target})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		end := time.Now().Add(span)
		toCaller := floodFor(c, end)
		f := <-got
		if f.n < 0 {
			t.Fatal("the flood target accepted nothing")
		}
		last := f.accepted.Add(span)
		if end.After(last) {
			last = end
		}
		return result{toTarget: f.n, toCaller: toCaller, flowed: last.Sub(f.accepted)}
	}
	const burst = 32 << 10
	limited := measure(tunnel.Config{MaxBytesPerSecond: rate})
	// At most: the rate over the time bytes could flow, 10 % for the
	// bucket's rounding, and one burst. At least: half the rate over the
	// nominal span (a limiter that throttles far below its rate fails;
	// a busy machine that is merely slow does not).
	most := float64(rate)*limited.flowed.Seconds()*1.1 + burst
	least := float64(rate) * span.Seconds() * 0.5
	for dir, n := range map[string]int64{"caller → target": limited.toTarget, "target → caller": limited.toCaller} {
		if float64(n) > most || float64(n) < least {
			t.Errorf("%s: %d bytes while bytes could flow for %s at %d B/s; want %.0f–%.0f", dir, n, limited.flowed.Round(time.Millisecond), rate, least, most)
		}
	}
	unlimited := measure(tunnel.Config{})
	bound := float64(rate)*span.Seconds()*1.2 + burst
	if float64(unlimited.toTarget) < 4*bound || float64(unlimited.toCaller) < 4*bound {
		t.Errorf("unlimited: %d and %d bytes in %s; want well above the limited %.0f", unlimited.toTarget, unlimited.toCaller, span, bound)
	}
}

// TestRateLimitedTunnelClosesAtOnce: a direction sleeping off its rate
// limit wakes when the server closes; Close does not wait for the bucket.
func TestRateLimitedTunnelClosesAtOnce(t *testing.T) {
	target, _ := floodTarget(t, 10*time.Second)
	caller, j, srv := pair(t, allowAll, tunnel.Config{MaxBytesPerSecond: 1 << 10})
	c, err := tunnel.Dial(context.Background(), caller, j.ID(), &pb.TunnelOpen{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go c.Write(make([]byte, 1<<20)) // some 30 s of debt after the burst
	// The first KiB each way is the burst; the flood then runs the
	// buckets into debts of up to 32 s.
	buf := make([]byte, 1)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() { srv.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for a rate-limited tunnel")
	}
}

// TestCloseWhere: the matching tunnel ends (its caller reads an error or
// EOF), the other keeps working, and the count says one.
func TestCloseWhere(t *testing.T) {
	target := echoServer(t)
	caller, j, srv := pair(t, allowAll, tunnel.Config{})
	doomed, err := tunnel.Dial(context.Background(), caller, j.ID(), &pb.TunnelOpen{Target: target, InstallerKey: "deleted"})
	if err != nil {
		t.Fatal(err)
	}
	defer doomed.Close()
	kept, err := tunnel.Dial(context.Background(), caller, j.ID(), &pb.TunnelOpen{Target: target, InstallerKey: "kept"})
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	var asked []peer.ID
	n := srv.CloseWhere(func(remote peer.ID, o *pb.TunnelOpen) bool {
		asked = append(asked, remote)
		return o.GetInstallerKey() == "deleted"
	})
	if n != 1 || len(asked) != 2 || asked[0] != caller.ID() || asked[1] != caller.ID() {
		t.Fatalf("CloseWhere ended %d, asked about %v; want 1, the caller twice", n, asked)
	}
	_ = doomed.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := doomed.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read on the ended tunnel: %v, want it cut", err)
	}
	_ = kept.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := kept.Write([]byte("still")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(kept, got); err != nil || string(got) != "still" {
		t.Fatalf("the other tunnel: %q, %v", got, err)
	}
	if n := srv.CloseWhere(func(peer.ID, *pb.TunnelOpen) bool { return true }); n != 1 {
		t.Errorf("second CloseWhere ended %d, want 1 (the kept one; the ended one is not counted again)", n)
	}
}

// TestCloseWhereDuringAuthorize: a tunnel whose open was read before
// CloseWhere is ended by it even while Authorize (judging by the old ACL)
// is still running: the target connection it then makes is closed, the
// caller gets no tunnel and none is counted.
func TestCloseWhereDuringAuthorize(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	targetEnded := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			targetEnded <- err
			return
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = c.Read(make([]byte, 1))
		targetEnded <- err
	}()
	inAuth, release, returned := make(chan struct{}), make(chan struct{}), make(chan struct{})
	caller, j, srv := pair(t, func(peer.ID, *pb.TunnelOpen) error {
		close(inAuth)
		<-release
		close(returned)
		return nil
	}, tunnel.Config{})
	errc := make(chan error, 1)
	go func() {
		c, err := tunnel.Dial(context.Background(), caller, j.ID(), &pb.TunnelOpen{Target: l.Addr().String()})
		if err == nil {
			c.Close()
		}
		errc <- err
	}()
	<-inAuth
	if n := srv.CloseWhere(func(peer.ID, *pb.TunnelOpen) bool { return true }); n != 1 {
		t.Errorf("CloseWhere ended %d, want the tunnel being authorized", n)
	}
	close(release)
	<-returned
	if err := <-errc; err == nil {
		t.Fatal("the caller got a tunnel that CloseWhere ended during Authorize")
	}
	if err := <-targetEnded; err != io.EOF {
		t.Fatalf("the target connection: %v, want it closed by the jumpoint (EOF)", err)
	}
	if st := srv.Stats(); st.Total != 0 {
		t.Errorf("tunnels carried %d, want 0", st.Total)
	}
}

// blackHole accepts TCP connections on loopback and never answers: a
// jumpoint whose process hangs, or a firewall that black-holes.
func blackHole(t *testing.T) ma.Multiaddr {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	})
	return ma.StringCast("/ip4/127.0.0.1/tcp/" + portOf(l.Addr()))
}

func portOf(a net.Addr) string {
	_, p, _ := net.SplitHostPort(a.String())
	return p
}

// TestDialerSharesTheDialAmongJumpoints: with libp2p's TCP budget of 5 s
// for the whole dial, a first jumpoint that accepts TCP and never answers
// gets only its share, and the second, working one carries the tunnel in
// the same dial.
func TestDialerSharesTheDialAmongJumpoints(t *testing.T) {
	target := echoServer(t)
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hungID, err := peer.IDFromPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	caller, j, _ := pair(t, allowAll, tunnel.Config{})
	caller.Peerstore().AddAddrs(hungID, []ma.Multiaddr{blackHole(t)}, time.Hour)
	d := tunnel.NewDialer(func(string) ([]peer.ID, *pb.TunnelOpen, bool) {
		return []peer.ID{hungID, j.ID()}, &pb.TunnelOpen{}, true
	})
	d.SetHost(caller)
	const budget = 5 * time.Second // go-libp2p's TCP transport's connect timeout
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	start := time.Now()
	c, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		t.Fatalf("dial after %s: %v", time.Since(start).Round(time.Millisecond), err)
	}
	c.Close()
	if took := time.Since(start); took < budget/2-100*time.Millisecond {
		t.Errorf("took %s: the hung jumpoint answered?", took)
	}
}

// TestDialerGivesUpOnAHungJumpointAlone: the only (or last) jumpoint gets
// all the time that is left, and a hung one ends as unreachable when it
// is spent.
func TestDialerGivesUpOnAHungJumpointAlone(t *testing.T) {
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hungID, err := peer.IDFromPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	caller := newHost(t, mesh.HostConfig{})
	caller.Peerstore().AddAddrs(hungID, []ma.Multiaddr{blackHole(t)}, time.Hour)
	d := tunnel.NewDialer(func(string) ([]peer.ID, *pb.TunnelOpen, bool) {
		return []peer.ID{hungID}, &pb.TunnelOpen{}, true
	})
	d.SetHost(caller)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = d.DialContext(ctx, "tcp", "127.0.0.1:1")
	if !catalog.HasCode(err, catalog.CodeJumpointUnreachable) {
		t.Fatalf("dial through a hung jumpoint: %v, want jumpoint_unreachable", err)
	}
}
