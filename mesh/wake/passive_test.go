package wake_test

import (
	"crypto/rand"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/wake"
)

// eventually polls cond until it holds, failing after a generous deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	coordinatortest.Eventually(t, 20*time.Second, what, cond)
}

type passiveFixture struct {
	site   *mesh.KeySigner
	self   peer.ID
	clock  *mesh.ManualClock
	p      *wake.Passive
	tcp    string
	udp    string
	client net.Conn // UDP, connected to the listener
}

func newPassive(t *testing.T, adjust func(*wake.PassiveConfig)) *passiveFixture {
	t.Helper()
	f := &passiveFixture{site: newSigner(t), self: newID(t), clock: mesh.NewManualClock(t0)}
	cfg := wake.PassiveConfig{Port: -1, Addr: "127.0.0.1", Site: f.site.PeerID(), Self: f.self, Now: f.clock.Now}
	if adjust != nil {
		adjust(&cfg)
	}
	p, err := wake.ListenPassive(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	f.p = p
	ta, ua := p.Addr()
	f.tcp, f.udp = ta.String(), ua.String()
	if ta.(*net.TCPAddr).Port != ua.(*net.UDPAddr).Port {
		t.Fatalf("TCP %s and UDP %s on different ports", ta, ua)
	}
	c, err := net.Dial("udp", f.udp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	f.client = c
	return f
}

func (f *passiveFixture) command(t *testing.T, edit func(*pb.WakeBody)) *pb.WakeCommand {
	b := body(f.self, f.clock.Now())
	if edit != nil {
		edit(b)
	}
	return sign(t, f.site, b)
}

func encode(t *testing.T, cmd *pb.WakeCommand) []byte {
	b, err := wake.Encode(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func frameOf(b []byte) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...)
}

// sendUDP sends one datagram; the caller waits on the counters.
func (f *passiveFixture) sendUDP(t *testing.T, b []byte) {
	t.Helper()
	if _, err := f.client.Write(b); err != nil {
		t.Fatal(err)
	}
}

// sendTCP writes raw to a new connection and waits until the listener has
// closed it: by then it has decided.
func (f *passiveFixture) sendTCP(t *testing.T, raw []byte) {
	t.Helper()
	c, err := net.Dial("tcp", f.tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write(raw) // the listener may close before reading it all
	_ = c.(*net.TCPConn).CloseWrite()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if n, err := io.Copy(io.Discard, c); n != 0 || isTimeout(err) {
		t.Fatalf("listener answered %d bytes or did not close: %v", n, err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func (f *passiveFixture) total() uint64 {
	s := f.p.Stats()
	return s.Accepted + s.Garbage + s.Oversized + s.Forged + s.OtherSite + s.OtherTarget + s.Expired +
		s.TooLong + s.Replayed + s.Duplicate + s.RateLimited
}

func (f *passiveFixture) noWake(t *testing.T) {
	t.Helper()
	select {
	case b := <-f.p.Woken():
		t.Fatalf("woken by %v", b)
	default:
	}
	if s := f.p.Stats(); s.Accepted != 0 {
		t.Fatalf("accepted: %+v", s)
	}
}

func TestPassiveAcceptsTheSitesCommand(t *testing.T) {
	f := newPassive(t, nil)
	cmd := f.command(t, nil)
	f.sendUDP(t, encode(t, cmd))
	select {
	case b := <-f.p.Woken():
		if peer.ID(b.GetTargetId()) != f.self {
			t.Fatalf("woken for %s", peer.ID(b.GetTargetId()))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("not woken over UDP")
	}
	// The same command over TCP seconds later: a copy, not a wake.
	f.sendTCP(t, frameOf(encode(t, cmd)))
	if s := f.p.Stats(); s.Accepted != 1 || s.Duplicate != 1 || s.Checked != 1 {
		t.Fatalf("stats %+v", s)
	}
	// A new command over TCP wakes.
	f.sendTCP(t, frameOf(encode(t, f.command(t, nil))))
	if s := f.p.Stats(); s.Accepted != 2 || s.Checked != 2 {
		t.Fatalf("stats %+v", s)
	}
	<-f.p.Woken()
}

// TestPassiveRefuses sends each kind of bad input over UDP and over TCP:
// each is counted under its reason, and nothing wakes.
func TestPassiveRefuses(t *testing.T) {
	f := newPassive(t, nil)
	other := newSigner(t)
	valid := encode(t, f.command(t, nil))
	forged := f.command(t, nil)
	forged.Signature = append([]byte(nil), forged.Signature...)
	forged.Signature[3] ^= 0x40
	// A body that claims our site, target and a fresh expiry, signed by another key.
	claim := body(f.self, t0)
	claim.SiteId = []byte(f.site.PeerID())
	claim.Nonce = make([]byte, wake.NonceSize)
	rand.Read(claim.Nonce)
	claimRaw, _ := proto.Marshal(claim)
	impostorSig, _ := other.Sign(append([]byte("jumpmesh wake v1\n"), claimRaw...))
	impostor := &pb.WakeCommand{Body: claimRaw, Signature: impostorSig}
	oversized := append([]byte(wake.Magic), make([]byte, wake.MaxCommand)...)

	cases := []struct {
		name    string
		udp     []byte
		tcp     []byte
		counter func(wake.PassiveStats) uint64
	}{
		{"garbage", []byte("GET / HTTP/1.1\r\n\r\n"), frameOf([]byte("GET / HTTP/1.1\r\n\r\n")), func(s wake.PassiveStats) uint64 { return s.Garbage }},
		// Over TCP, "GE" reads as a length of 18245.
		{"http", make([]byte, wake.MaxCommand+1), []byte("GET / HTTP/1.1\r\n\r\n"), func(s wake.PassiveStats) uint64 { return s.Oversized }},
		{"empty", []byte{}, nil, func(s wake.PassiveStats) uint64 { return s.Garbage }},
		{"no magic", valid[len(wake.Magic):], frameOf(valid[len(wake.Magic):]), func(s wake.PassiveStats) uint64 { return s.Garbage }},
		{"magic then junk", append([]byte(wake.Magic), 0xff, 0xff, 0xff, 0x01), frameOf(append([]byte(wake.Magic), 0xff, 0xff, 0xff, 0x01)), func(s wake.PassiveStats) uint64 { return s.Garbage }},
		{"oversized", oversized, frameOf(oversized), func(s wake.PassiveStats) uint64 { return s.Oversized }},
		{"oversized length only", make([]byte, 65000), []byte{0xff, 0xff}, func(s wake.PassiveStats) uint64 { return s.Oversized }},
		{"forged", encode(t, forged), frameOf(encode(t, forged)), func(s wake.PassiveStats) uint64 { return s.Forged }},
		{"impostor key", encode(t, impostor), frameOf(encode(t, impostor)), func(s wake.PassiveStats) uint64 { return s.Forged }},
		{"another site", encode(t, sign(t, other, body(f.self, t0))), frameOf(encode(t, sign(t, other, body(f.self, t0)))), func(s wake.PassiveStats) uint64 { return s.OtherSite }},
		{"another target", encode(t, sign(t, f.site, body(newID(t), t0))), frameOf(encode(t, sign(t, f.site, body(newID(t), t0)))), func(s wake.PassiveStats) uint64 { return s.OtherTarget }},
		{"expired", encode(t, f.command(t, func(b *pb.WakeBody) { b.ExpiresUnixMillis = t0.Add(-time.Second).UnixMilli() })),
			frameOf(encode(t, f.command(t, func(b *pb.WakeBody) { b.ExpiresUnixMillis = t0.UnixMilli() }))), func(s wake.PassiveStats) uint64 { return s.Expired }},
		{"valid too long", encode(t, f.command(t, func(b *pb.WakeBody) { b.ExpiresUnixMillis = t0.Add(time.Hour).UnixMilli() })),
			frameOf(encode(t, f.command(t, func(b *pb.WakeBody) { b.ExpiresUnixMillis = t0.Add(2 * wake.MaxValidity).UnixMilli() }))), func(s wake.PassiveStats) uint64 { return s.TooLong }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, total := c.counter(f.p.Stats()), f.total()
			f.sendUDP(t, c.udp)
			eventually(t, "the datagram counted", func() bool { return f.total() == total+1 })
			if got := c.counter(f.p.Stats()); got != before+1 {
				t.Fatalf("UDP: counter %d → %d; stats %+v", before, got, f.p.Stats())
			}
			if c.tcp != nil {
				f.sendTCP(t, c.tcp)
				if got := c.counter(f.p.Stats()); got != before+2 {
					t.Fatalf("TCP: counter %d → %d; stats %+v", before, got, f.p.Stats())
				}
			}
			f.noWake(t)
		})
	}
	// Signature checks: only the forged and impostor commands reached one.
	if s := f.p.Stats(); s.Checked != 4 {
		t.Fatalf("signature checks %d, want 4 (forged and impostor, twice each): %+v", s.Checked, s)
	}
	// A TCP peer that sends a partial frame and leaves costs a connection
	// until it leaves, and counts as garbage.
	before := f.p.Stats().Garbage
	f.sendTCP(t, frameOf(valid)[:20])
	if got := f.p.Stats().Garbage; got != before+1 {
		t.Fatalf("partial frame: garbage %d → %d", before, got)
	}
	f.noWake(t)
}

// TestPassiveRefusesReplays: a command accepted once is refused when it
// comes back later, over either transport, until it expires (then it is
// refused as expired).
func TestPassiveRefusesReplays(t *testing.T) {
	f := newPassive(t, nil)
	cmd := encode(t, f.command(t, nil))
	f.sendUDP(t, cmd)
	<-f.p.Woken()
	f.clock.Advance(20 * time.Second) // past the duplicate window, before expiry
	f.sendUDP(t, cmd)
	eventually(t, "the replay counted", func() bool { return f.p.Stats().Replayed == 1 })
	f.sendTCP(t, frameOf(cmd))
	if s := f.p.Stats(); s.Replayed != 2 || s.Accepted != 1 || s.Checked != 1 {
		t.Fatalf("stats %+v", s)
	}
	f.clock.Advance(20 * time.Second)
	f.sendTCP(t, frameOf(cmd))
	if s := f.p.Stats(); s.Expired != 1 || s.Accepted != 1 {
		t.Fatalf("stats %+v", s)
	}
	f.noWakeAfterFirst(t)
}

func (f *passiveFixture) noWakeAfterFirst(t *testing.T) {
	t.Helper()
	select {
	case b := <-f.p.Woken():
		t.Fatalf("woken again by %v", b)
	default:
	}
}

// TestPassiveFloodIsBounded: a flood of well-formed commands that pass
// every cheap check (our site, our peer, fresh, new nonces) but are forged
// costs one signature check per rate token: Burst at once, then Rate a
// second. The clock is stopped, so the bucket never refills.
func TestPassiveFloodIsBounded(t *testing.T) {
	const burst, flood = 20, 600
	f := newPassive(t, func(c *wake.PassiveConfig) { c.Burst, c.Rate = burst, 5 })
	other := newSigner(t)
	forge := func() []byte {
		b := body(f.self, t0)
		b.SiteId = []byte(f.site.PeerID())
		b.Nonce = make([]byte, wake.NonceSize)
		rand.Read(b.Nonce)
		raw, _ := proto.Marshal(b)
		sig, _ := other.Sign(append([]byte("jumpmesh wake v1\n"), raw...))
		return encode(t, &pb.WakeCommand{Body: raw, Signature: sig})
	}
	sent := uint64(0)
	for sent < flood {
		// In batches, so the socket's receive buffer never overflows.
		for range 50 {
			f.sendUDP(t, forge())
			sent++
		}
		eventually(t, "the batch counted", func() bool { return f.total() == sent })
	}
	for range 10 {
		f.sendTCP(t, frameOf(forge()))
	}
	s := f.p.Stats()
	if s.Checked != burst || s.Forged != burst || s.RateLimited != flood+10-burst {
		t.Fatalf("flood of %d: %d signature checks (want %d), stats %+v", flood+10, s.Checked, burst, s)
	}
	// During the flood even the site's command waits for a token...
	good := encode(t, f.command(t, nil))
	f.sendTCP(t, frameOf(good))
	if s := f.p.Stats(); s.RateLimited != flood+10-burst+1 {
		t.Fatalf("stats %+v", s)
	}
	f.noWake(t)
	// ...which the next second brings (5 a second).
	f.clock.Advance(time.Second)
	f.sendTCP(t, frameOf(good))
	if s := f.p.Stats(); s.Accepted != 1 || s.Checked != burst+1 {
		t.Fatalf("stats %+v", s)
	}
	<-f.p.Woken()
}

// TestPassiveBoundsTCPConnections: idle connections from one address hold
// at most MaxConnsPerIP slots; more are closed at once; UDP still works.
func TestPassiveBoundsTCPConnections(t *testing.T) {
	f := newPassive(t, func(c *wake.PassiveConfig) { c.MaxConnsPerIP = 2 })
	var idle []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", f.tcp)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	// The listener tracks a connection once accepted; a third is refused
	// once both are. Retry until the refusal shows.
	eventually(t, "a connection over the bound refused", func() bool {
		c, err := net.Dial("tcp", f.tcp)
		if err != nil {
			return false
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, _ = io.Copy(io.Discard, c)
		return f.p.Stats().Busy > 0
	})
	f.sendUDP(t, encode(t, f.command(t, nil)))
	<-f.p.Woken()
	_ = idle
}

func TestPassiveClose(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	site, self := newID(t), newID(t)
	p, err := wake.ListenPassive(wake.PassiveConfig{Port: -1, Addr: "127.0.0.1", Site: site, Self: self})
	if err != nil {
		t.Fatal(err)
	}
	ta, _ := p.Addr()
	c, err := net.Dial("tcp", ta.String()) // an idle connection, closed by Close
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// The port is free again, for both transports.
	p2, err := wake.ListenPassive(wake.PassiveConfig{Port: ta.(*net.TCPAddr).Port, Addr: "127.0.0.1", Site: site, Self: self})
	if err != nil {
		t.Fatalf("reopening the port: %v", err)
	}
	p2.Close()
	if _, err := wake.ListenPassive(wake.PassiveConfig{Port: -1}); err == nil {
		t.Fatal("a listener without site and self")
	}
}
