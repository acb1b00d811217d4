package coordinatortest

import (
	"net"
	"testing"
	"time"

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
// connections and queues 8 more, until the test ends. A member whose next
// request waits for the main port then waits a minute; through the lane it
// is answered at once.
func (s *Site[C]) JamMainPort(t testing.TB) {
	t.Helper()
	s.Stop()
	s.Resources.HandshakeHold = time.Minute
	s.Start()
	g := s.Coord.Handshakes()
	SilentConns(t, TCPNetAddr(t, s.Coord.LoginAddrs()), g.Limit+8)
	Eventually(t, 10*time.Second, "the gate's places all taken, connections queued", func() bool {
		st := s.Coord.Handshakes()
		return st.InFlight >= st.Limit && st.Waited > g.Waited
	})
}

// AnsweredOnLane jams the main port (JamMainPort) and waits until
// answered, the time of a member's last answered request, is after the
// jam: the member was served during the storm, through the lane (a
// connection there, over TCP) while the main port's places were all taken.
func (s *Site[C]) AnsweredOnLane(t testing.TB, answered func() time.Time) {
	t.Helper()
	s.JamMainPort(t)
	jammed := time.Now()
	Eventually(t, 15*time.Second, "an answer during the storm", func() bool { return answered().After(jammed) })
	if s.OnLane(t) == 0 {
		t.Fatalf("no connection on the lane %v", s.Coord.LaneAddrs())
	}
	if st := s.Coord.Handshakes(); st.InFlight < st.Limit {
		t.Fatalf("the main port's places came back during the test (%+v): it shows nothing", st)
	}
}

// SilentConns opens n TCP connections to addr that send nothing, closed
// at the end of the test.
func SilentConns(t testing.TB, addr net.Addr, n int) {
	t.Helper()
	for range n {
		c, err := net.DialTimeout("tcp", addr.String(), 10*time.Second)
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		t.Cleanup(func() { c.Close() })
	}
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
	lane := s.Coord.LaneAddrs()
	port := func(a ma.Multiaddr) string { p, _ := a.ValueForProtocol(ma.P_TCP); return p }
	n := 0
	for _, c := range s.Coord.Host().Network().Conns() {
		local := port(c.LocalMultiaddr())
		for _, l := range lane {
			if local != "" && port(l) == local {
				n++
				if _, err := c.RemoteMultiaddr().ValueForProtocol(ma.P_TCP); err != nil {
					t.Errorf("a connection on the lane is %s, want TCP", c.RemoteMultiaddr())
				}
				break
			}
		}
	}
	return n
}
