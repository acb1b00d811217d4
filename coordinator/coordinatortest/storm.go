package coordinatortest

import (
	"net"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// A reconnect storm as a member meets it: every handshake place of the
// coordinator's main port taken and more connections queued behind them,
// standing for a storm's peers (coordinator/handshakes.go), so that only
// the members' lane (coordinator/lane.go) answers at once.

// JamMainPort restarts the coordinator with a connection holding its
// handshake place for a minute (no handshake has completed since the
// restart), then takes every place of its main TCP port with silent
// connections and queues 8 more, until the test ends. Until a handshake
// completes (the gate then holds a silent connection's place for four
// handshakes' time, coordinator/handshakes.go), a member whose next
// request waits for the main port waits a minute; through the lane it is
// answered at once.
func (s *Site[C]) JamMainPort(t testing.TB) {
	t.Helper()
	s.Stop()
	s.Resources.HandshakeHold = time.Minute
	s.Start()
	g := s.Coord.Handshakes()
	StalledHandshakes(t, TCPNetAddr(t, s.Coord.LoginAddrs()), g.Limit+8)
	Eventually(t, 10*time.Second, "the gate's places all taken, connections queued", func() bool {
		st := s.Coord.Handshakes()
		return st.InFlight >= st.Limit && st.Waited > g.Waited
	})
}

// AnsweredDuringStorm jams the main port (JamMainPort), cuts every
// connection the coordinator holds, and waits until answered, the time of
// member's last answered request, is after that: the member reconnected
// and was served while the main port's places were taken. The
// connections it made to the coordinator are TCP, never QUIC (which passes
// the storm only because the gate does not bound QUIC's handshakes); all
// its connections are returned.
func (s *Site[C]) AnsweredDuringStorm(t testing.TB, member peer.ID, answered func() time.Time) []network.Conn {
	t.Helper()
	s.JamMainPort(t)
	jammed := time.Now()
	for _, c := range s.Coord.Host().Network().Conns() {
		_ = c.Close()
	}
	Eventually(t, 15*time.Second, "an answer during the storm", func() bool { return answered().After(jammed) })
	conns := s.Coord.Host().Network().ConnsToPeer(member)
	if len(conns) == 0 {
		t.Fatal("no connection to the member after its answer")
	}
	for _, c := range conns {
		// The member's own connections; the coordinator's dials to it (its
		// DHT's, a relay's node) may take QUIC, and pass no gate.
		if c.Stat().Direction != network.DirInbound {
			continue
		}
		if _, err := c.RemoteMultiaddr().ValueForProtocol(ma.P_TCP); err != nil {
			t.Errorf("the member's connection is %s, want TCP", c.RemoteMultiaddr())
		}
	}
	// Not asserted: that the main port's places are still all taken. The
	// silent connections hold theirs until a first handshake completes
	// (coordinator/handshakes.go), then four handshakes' time: the
	// member's own through the lane frees them soon after the answer.
	t.Logf("gate %+v", s.Coord.Handshakes())
	return conns
}

// AnsweredOnLane is AnsweredDuringStorm for a member whose only
// connection to the coordinator is its member client's: each is one it
// made through the lane, or one the coordinator dialled itself.
func (s *Site[C]) AnsweredOnLane(t testing.TB, member peer.ID, answered func() time.Time) {
	t.Helper()
	for _, c := range s.AnsweredDuringStorm(t, member, answered) {
		if c.Stat().Direction != network.DirOutbound && !s.onLane(c) {
			t.Errorf("the member's connection %s (at %s) is not on the lane %v", c.RemoteMultiaddr(), c.LocalMultiaddr(), s.Coord.LaneAddrs())
		}
	}
}

// SilentConns opens n TCP connections to addr that send nothing, closed
// at the end of the test, and returns them.
func SilentConns(t testing.TB, addr net.Addr, n int) []net.Conn {
	t.Helper()
	return openConns(t, addr, n, nil)
}

// StalledHandshakes opens n TCP connections to addr that choose TLS, as a
// libp2p dialer does (multistream-select), and then send nothing: each
// waits for, then holds, a place of the coordinator's handshake gate, as a
// storm's peer whose handshake the gate let start. Closed at the end of
// the test.
func StalledHandshakes(t testing.TB, addr net.Addr, n int) {
	t.Helper()
	var hello []byte
	for _, m := range []string{"/multistream/1.0.0\n", "/tls/1.0.0\n"} {
		hello = append(hello, byte(len(m)))
		hello = append(hello, m...)
	}
	openConns(t, addr, n, hello)
}

// openConns opens n TCP connections to addr, each sending first (when
// not empty) and then nothing, closed at the end of the test.
func openConns(t testing.TB, addr net.Addr, n int, first []byte) []net.Conn {
	t.Helper()
	var cs []net.Conn
	for range n {
		c, err := net.DialTimeout("tcp", addr.String(), 10*time.Second)
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		t.Cleanup(func() { c.Close() })
		cs = append(cs, c)
		if len(first) == 0 {
			continue
		}
		if _, err := c.Write(first); err != nil {
			t.Fatalf("write to %s: %v", addr, err)
		}
	}
	return cs
}

// TCPNetAddr is the first TCP address among addrs (with /p2p/ or not).
func TCPNetAddr(t testing.TB, addrs []ma.Multiaddr) net.Addr {
	t.Helper()
	for _, a := range addrs {
		if transport, _ := peer.SplitAddr(a); transport != nil {
			a = transport
		}
		if _, err := a.ValueForProtocol(ma.P_TCP); err == nil {
			na, err := manet.ToNetAddr(a)
			if err != nil {
				t.Fatal(err)
			}
			return na
		}
	}
	t.Fatalf("no TCP address in %v", addrs)
	return nil
}

// OnLane counts the coordinator's connections accepted on its members'
// lane; each must be TCP.
func (s *Site[C]) OnLane(t testing.TB) int {
	t.Helper()
	n := 0
	for _, c := range s.Coord.Host().Network().Conns() {
		if s.onLane(c) {
			n++
			if _, err := c.RemoteMultiaddr().ValueForProtocol(ma.P_TCP); err != nil {
				t.Errorf("a connection on the lane is %s, want TCP", c.RemoteMultiaddr())
			}
		}
	}
	return n
}

// onLane tells whether c was accepted on the coordinator's members' lane.
func (s *Site[C]) onLane(c network.Conn) bool {
	port := func(a ma.Multiaddr) string { p, _ := a.ValueForProtocol(ma.P_TCP); return p }
	local := port(c.LocalMultiaddr())
	for _, l := range s.Coord.LaneAddrs() {
		if local != "" && port(l) == local {
			return true
		}
	}
	return false
}
