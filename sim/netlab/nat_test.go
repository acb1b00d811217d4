package netlab_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/sim/netlab"
	"github.com/jumpmesh/jumpmesh/sim/netlab/labtest"
	"github.com/jumpmesh/jumpmesh/sim/probe"
)

const (
	probePort  = 3478
	probePort2 = 3479 // a second socket on s1, to tell port-dependent filtering
	waitLong   = 5 * time.Second
)

// natLab is one topology with every preset, three probe servers on the
// public side, a stranger no client ever writes to, and a client on each
// network.
type natLab struct {
	lab     *netlab.Lab
	servers []netip.AddrPort          // s1, s2, s3 on probePort
	udp     map[string]net.PacketConn // "s1", "s2", "s3", "s1b" (s1 on probePort2), "stranger"
}

func newNATLab(t *testing.T) *natLab {
	t.Helper()
	lab := labtest.New(t, netlab.Topology{
		Networks: []netlab.NetworkSpec{
			{Name: "pub", NAT: netlab.Public},
			{Name: "easy", NAT: netlab.Easy},
			{Name: "hard", NAT: netlab.Hard},
			{Name: "seq", NAT: netlab.Sequential},
			{Name: "cgnat", NAT: netlab.CGNAT},
			{Name: "udpb", NAT: netlab.UDPBlocked},
			{Name: "iso", NAT: netlab.Isolated},
		},
		Hosts: []netlab.HostSpec{
			{Name: "s1", Network: "pub"}, {Name: "s2", Network: "pub"}, {Name: "s3", Network: "pub"},
			{Name: "stranger", Network: "pub"},
			{Name: "c-pub", Network: "pub"},
			{Name: "c-easy", Network: "easy"},
			{Name: "c-hard", Network: "hard"},
			{Name: "c-seq", Network: "seq"},
			{Name: "c-cgnat", Network: "cgnat"},
			{Name: "c-udpb", Network: "udpb"},
			{Name: "c-iso", Network: "iso"}, {Name: "c-iso2", Network: "iso"},
		},
	})
	nl := &natLab{lab: lab, udp: map[string]net.PacketConn{}}
	for _, name := range []string{"s1", "s2", "s3"} {
		h := lab.Host(name)
		nl.servers = append(nl.servers, netip.AddrPortFrom(h.Addr(), probePort))
		nl.udp[name] = serveProbes(t, h, probePort)
	}
	nl.udp["s1b"] = serveProbes(t, lab.Host("s1"), probePort2)
	nl.udp["stranger"] = serveProbes(t, lab.Host("stranger"), probePort)
	serveProbes(t, lab.Host("c-iso2"), probePort)
	return nl
}

// serveProbes runs UDP and TCP probe servers on h and returns the UDP socket.
func serveProbes(t *testing.T, h *netlab.Host, port int) net.PacketConn {
	t.Helper()
	addr := ":" + strconv.Itoa(port)
	pc, err := h.ListenPacket("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := h.Listen("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 2)
	go func() { probe.ServeUDP(pc); done <- struct{}{} }()
	go func() { probe.ServeTCP(ln); done <- struct{}{} }()
	t.Cleanup(func() {
		pc.Close()
		ln.Close()
		<-done
		<-done
	})
	return pc
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// udpMappings probes every server from one socket of h and returns the
// socket, its local port and what each server saw.
func udpMappings(t *testing.T, nl *natLab, h *netlab.Host) (net.PacketConn, uint16, []netip.AddrPort) {
	t.Helper()
	pc, err := h.ListenPacket("udp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	local := uint16(pc.LocalAddr().(*net.UDPAddr).Port)
	var seen []netip.AddrPort
	for _, s := range nl.servers {
		m, err := probe.UDP(ctxFor(t, waitLong), pc, s)
		if err != nil {
			t.Fatalf("UDP probe from %s to %v: %v", h.Name(), s, err)
		}
		seen = append(seen, m)
	}
	return pc, local, seen
}

// tcpMappings connects to every server from one local port of h (with
// SO_REUSEADDR, as hole punching does) and returns the port and what each
// server saw.
func tcpMappings(t *testing.T, nl *natLab, h *netlab.Host) (uint16, []netip.AddrPort, error) {
	t.Helper()
	var local uint16
	var seen []netip.AddrPort
	for _, s := range nl.servers {
		d := &net.Dialer{
			LocalAddr: &net.TCPAddr{Port: int(local)},
			Control: func(_, _ string, c syscall.RawConn) error {
				var serr error
				err := c.Control(func(fd uintptr) {
					serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
				})
				return errors.Join(err, serr)
			},
		}
		ctx := ctxFor(t, waitLong)
		c, err := h.Dial(ctx, d, "tcp4", s.String())
		if err != nil {
			return 0, nil, err
		}
		if local == 0 {
			local = uint16(c.LocalAddr().(*net.TCPAddr).Port)
		}
		m, err := probe.TCP(ctx, c)
		c.Close()
		if err != nil {
			t.Fatalf("TCP probe from %s to %v: %v", h.Name(), s, err)
		}
		seen = append(seen, m)
	}
	return local, seen, nil
}

func allEqual(ms []netip.AddrPort) bool {
	for _, m := range ms {
		if m != ms[0] {
			return false
		}
	}
	return true
}

// eventually polls cond until it is true or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(5 * time.Millisecond) // poll interval, bounded by the deadline
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		<-tick.C
	}
}

// TestPresets checks every NAT preset's mapping and filtering with probes:
// what address:port two or three public servers see from one socket, and
// whether packets nobody asked for get through.
func TestPresets(t *testing.T) {
	nl := newNATLab(t)
	lab := nl.lab

	t.Run("public", func(t *testing.T) {
		t.Parallel()
		h := lab.Host("c-pub")
		pc, local, seen := udpMappings(t, nl, h)
		want := netip.AddrPortFrom(h.Addr(), local)
		for _, m := range seen {
			if m != want {
				t.Errorf("UDP: server saw %v, want the host's own %v", m, want)
			}
		}
		tport, tseen, err := tcpMappings(t, nl, h)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range tseen {
			if m != netip.AddrPortFrom(h.Addr(), tport) {
				t.Errorf("TCP: server saw %v, want %v:%d", m, h.Addr(), tport)
			}
		}
		// No filtering: a stranger reaches the host's socket.
		expectDelivered(t, nl.udp["stranger"], pc, want, "unsolicited from a stranger")
	})

	for _, tc := range []struct {
		host      string
		preserved bool // endpoint-independent and port-preserving
	}{
		{"c-easy", true},
		{"c-hard", false},
		{"c-seq", false},
		{"c-cgnat", true},
	} {
		t.Run(lab.Host(tc.host).Network().Name(), func(t *testing.T) {
			t.Parallel()
			h := lab.Host(tc.host)
			nw := h.Network()
			pc, local, seen := udpMappings(t, nl, h)
			t.Logf("UDP local port %d, seen %v", local, seen)
			for _, m := range seen {
				if m.Addr() != nw.PublicAddr() {
					t.Errorf("UDP: server saw %v, want the NAT's public address %v", m.Addr(), nw.PublicAddr())
				}
			}
			checkMapping(t, "UDP", tc.preserved, local, seen)
			tport, tseen, err := tcpMappings(t, nl, h)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("TCP local port %d, seen %v", tport, tseen)
			for _, m := range tseen {
				if m.Addr() != nw.PublicAddr() {
					t.Errorf("TCP: server saw %v, want %v", m.Addr(), nw.PublicAddr())
				}
			}
			checkMapping(t, "TCP", tc.preserved, tport, tseen)

			// Filtering: the mapping towards s1 refuses a host the client
			// never wrote to and s1's own other port; each refused packet
			// is dropped at the NAT. s1 itself still gets through.
			mapped := seen[0]
			expectRefused(t, nw, nl.udp["stranger"], mapped, "unsolicited from a stranger")
			expectRefused(t, nw, nl.udp["s1b"], mapped, "unsolicited from s1's other port")
			expectDelivered(t, nl.udp["s1"], pc, mapped, "from s1, which the host wrote to")
			expectSilentSYN(t, nw, lab.Host("stranger"), netip.AddrPortFrom(nw.PublicAddr(), tport))
		})
	}

	t.Run("udp-blocked", func(t *testing.T) {
		t.Parallel()
		h := lab.Host("c-udpb")
		nw := h.Network()
		pc, err := h.ListenPacket("udp4", ":0")
		if err != nil {
			t.Fatal(err)
		}
		before, err := nw.NATStats()
		if err != nil {
			t.Fatal(err)
		}
		// The NAT's drop counter proves the datagram died there; nothing
		// else sends UDP through this network.
		s1 := net.UDPAddrFromAddrPort(nl.servers[0])
		if _, err := pc.WriteTo([]byte("JMPROBE1 blocked"), s1); err != nil {
			t.Fatal(err)
		}
		eventually(t, waitLong, "UDP dropped at the NAT", func() (bool, error) {
			s, err := nw.NATStats()
			return s.UDPBlocked > before.UDPBlocked, err
		})
		tport, tseen, err := tcpMappings(t, nl, h)
		if err != nil {
			t.Fatalf("TCP through a udp-blocked NAT: %v", err)
		}
		for _, m := range tseen {
			if m != netip.AddrPortFrom(nw.PublicAddr(), tport) {
				t.Errorf("TCP: server saw %v, want %v:%d", m, nw.PublicAddr(), tport)
			}
		}
	})

	t.Run("isolated", func(t *testing.T) {
		t.Parallel()
		h := lab.Host("c-iso")
		pc, err := h.ListenPacket("udp4", ":0")
		if err != nil {
			t.Fatal(err)
		}
		_, err = probe.UDP(ctxFor(t, waitLong), pc, nl.servers[0])
		if !errors.Is(err, syscall.ENETUNREACH) {
			t.Errorf("UDP to the public side: %v, want ENETUNREACH", err)
		}
		if _, _, err := tcpMappings(t, nl, h); !errors.Is(err, syscall.ENETUNREACH) {
			t.Errorf("TCP to the public side: %v, want ENETUNREACH", err)
		}
		// The LAN itself works.
		peer := lab.Host("c-iso2")
		seen, err := probe.UDP(ctxFor(t, waitLong), pc, netip.AddrPortFrom(peer.Addr(), probePort))
		if err != nil {
			t.Fatalf("UDP on the isolated LAN: %v", err)
		}
		if seen.Addr() != h.Addr() {
			t.Errorf("LAN peer saw %v, want %v", seen.Addr(), h.Addr())
		}
	})
}

func checkMapping(t *testing.T, proto string, preserved bool, local uint16, seen []netip.AddrPort) {
	t.Helper()
	if preserved {
		if !allEqual(seen) {
			t.Errorf("%s: mappings differ per destination %v, want one endpoint-independent mapping", proto, seen)
		}
		if seen[0].Port() != local {
			t.Errorf("%s: mapped port %d, want the local port %d preserved", proto, seen[0].Port(), local)
		}
		return
	}
	// A new port per destination (hard: fully random, three equal ports by
	// chance has odds of about one in 10^9; sequential: the next port).
	if allEqual(seen) {
		t.Errorf("%s: one mapping %v for every destination, want a new port per destination", proto, seen[0])
	}
}

// expectRefused sends an unsolicited datagram from `from` to the NAT mapping
// and waits until the NAT counts it as refused (dropped in its input chain).
func expectRefused(t *testing.T, nw *netlab.Network, from net.PacketConn, mapped netip.AddrPort, what string) {
	t.Helper()
	before, err := nw.NATStats()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := from.WriteTo([]byte("UNSOLICITED"), net.UDPAddrFromAddrPort(mapped)); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitLong, what+" refused at the NAT", func() (bool, error) {
		s, err := nw.NATStats()
		return s.UDPRefused > before.UDPRefused, err
	})
}

// expectDelivered sends a datagram from `from` to addr and waits until pc
// receives exactly it; an UNSOLICITED datagram arriving first means a
// refused packet got through.
func expectDelivered(t *testing.T, from, pc net.PacketConn, addr netip.AddrPort, what string) {
	t.Helper()
	payload := "HELLO " + what
	if _, err := from.WriteTo([]byte(payload), net.UDPAddrFromAddrPort(addr)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	_ = pc.SetReadDeadline(time.Now().Add(waitLong))
	defer pc.SetReadDeadline(time.Time{})
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		switch got := string(buf[:n]); got {
		case payload:
			return
		case "UNSOLICITED":
			if what != "unsolicited from a stranger" {
				t.Errorf("an unsolicited datagram reached the host behind the NAT")
			}
		}
	}
}

// expectSilentSYN dials the NAT's TCP mapping from a stranger: RFC 5382
// REQ-4 wants the unsolicited SYN dropped silently (TCP hole punching needs
// it), so the dial must time out rather than be refused, and the NAT must
// count the SYN as unsolicited.
func expectSilentSYN(t *testing.T, nw *netlab.Network, from *netlab.Host, to netip.AddrPort) {
	t.Helper()
	before, err := nw.NATStats()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 800*time.Millisecond)
	defer cancel()
	c, err := from.Dial(ctx, &net.Dialer{}, "tcp4", to.String())
	if err == nil {
		c.Close()
		t.Fatalf("an unsolicited TCP connection to %v went through", to)
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("the NAT answered an unsolicited SYN to %v with a reset", to)
	}
	eventually(t, waitLong, "the unsolicited SYN counted at the NAT", func() (bool, error) {
		s, err := nw.NATStats()
		return s.Unsolicited > before.Unsolicited, err
	})
}

// TestUnsolicitedUDPTakesNoPort is the reason the NATs drop new UDP from the
// WAN to themselves: delivered locally, such a datagram got a confirmed
// conntrack entry, and the host's next flow to its sender, whose reply tuple
// equals that entry, left from another port. Port-mapping probing hits
// exactly that: a packet reaching a NAT before the mapping it aims at exists.
// Here a stranger writes to an easy NAT's mapping first; the host behind it
// then writes to the stranger from the same socket, and the stranger must
// see the same mapping.
func TestUnsolicitedUDPTakesNoPort(t *testing.T) {
	lab := labtest.New(t, netlab.Topology{
		Networks: []netlab.NetworkSpec{{Name: "pub", NAT: netlab.Public}, {Name: "easy", NAT: netlab.Easy}},
		Hosts: []netlab.HostSpec{
			{Name: "s1", Network: "pub"}, {Name: "stranger", Network: "pub"},
			{Name: "c", Network: "easy"},
		},
	})
	serveProbes(t, lab.Host("s1"), probePort)
	stranger := serveProbes(t, lab.Host("stranger"), probePort)
	c := lab.Host("c")
	nw := c.Network()
	pc, err := c.ListenPacket("udp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	mapped, err := probe.UDP(ctxFor(t, waitLong), pc, netip.AddrPortFrom(lab.Host("s1").Addr(), probePort))
	if err != nil {
		t.Fatal(err)
	}
	expectRefused(t, nw, stranger, mapped, "unsolicited from a stranger")
	strangerAddr := netip.AddrPortFrom(lab.Host("stranger").Addr(), probePort)
	seen, err := probe.UDP(ctxFor(t, waitLong), pc, strangerAddr)
	if err != nil {
		t.Fatal(err)
	}
	if seen != mapped {
		t.Errorf("after the stranger's unsolicited datagram, the stranger sees the host as %v, want its mapping %v (the port was taken)", seen, mapped)
	}
}
