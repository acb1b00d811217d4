package probe

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// testProbePort, when set (tests), chooses the port of probe i instead of
// the random one: on loopback the test puts the hard side's sockets'
// ports among the random ones.
var testProbePort func(i int, random uint16) uint16

// randomPorts are n distinct random ports from minPort to 65535.
func randomPorts(n int) []uint16 {
	span := 65536 - minPort
	n = min(n, span)
	seen := make(map[uint16]bool, n)
	out := make([]uint16, 0, n)
	for len(out) < n {
		p := uint16(minPort + rand.IntN(span))
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// easy is the easy side's work: up to probes probes from the shared QUIC
// socket to random ports of the hard side's public IP, paced ProbeGap,
// until a hit (a valid opener from that IP, naming a socket below
// sockets, or the hard side's ProbeHit); then, on ready, the dial, and
// done.
func (x *session) easy(remote *pb.ProbeSide, probes, sockets int) error {
	ip, err := netip.ParseAddr(remote.GetPublicIp())
	ip = ip.Unmap()
	switch {
	case err != nil || !validIP(ip):
		x.fail("the hard side's public IP is not an address")
		return fmt.Errorf("%w: the hard side's public IP %q is not an address", ErrProtocol, remote.GetPublicIp())
	case x.l.Allowed == nil || !x.l.Allowed(ip):
		x.fail("the hard side's public IP is not the address this side may send to")
		return fmt.Errorf("%w: the hard side's public IP %s", ErrNotAllowed, ip)
	case x.l.UDP == nil:
		x.fail("no socket to probe from")
		return errors.New("probing: no shared QUIC socket")
	}
	pc, err := x.l.UDP(udpNetwork(ip))
	if err != nil {
		x.fail("no socket to probe from")
		return fmt.Errorf("probing: the shared QUIC socket: %w", err)
	}
	var readers sync.WaitGroup
	closePC := sync.OnceFunc(func() { _ = pc.Close(); readers.Wait() })
	defer closePC()
	hits := make(chan hit, 1)
	readers.Go(func() { readOpeners(pc, x.key, ip, sockets, hits) })
	x.startEvents()

	ports := randomPorts(probes)
	gap := time.NewTimer(0)
	defer gap.Stop()
	var grace <-chan time.Time
	for !x.res.Hit {
		select {
		case <-x.ctx.Done():
			x.done("time out")
			return fmt.Errorf("%w after %d probes", ErrNoHit, x.res.ProbesSent)
		case <-grace:
			why := fmt.Sprintf("no hit after %d probes", x.res.ProbesSent)
			x.done(why)
			return fmt.Errorf("%w: %s", ErrNoHit, why)
		case <-gap.C:
			i := x.res.ProbesSent
			if i >= len(ports) {
				continue
			}
			port := ports[i]
			if testProbePort != nil {
				port = testProbePort(i, port)
			}
			to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, port))
			_, _ = pc.WriteTo(seal(x.key, packet{typ: typeProbe, port: port}), to)
			x.res.ProbesSent++
			if testSent != nil {
				testSent(typeProbe, time.Now())
			}
			if x.res.ProbesSent == len(ports) {
				grace = time.After(hitGrace)
			} else {
				gap.Reset(ProbeGap)
			}
		case h := <-hits:
			x.res.Hit = true
			x.tellHit(h)
		case ev, ok := <-x.events:
			if !ok {
				return fmt.Errorf("%w: the stream ended before a hit", ErrProtocol)
			}
			switch ev := ev.GetEvent().(type) {
			case *pb.ProbeEvent_Hit:
				x.res.Hit = true
				x.log.Debug("probe hit (hard side)", logRemote, x.remote, logPort, ev.Hit.GetPort(), logIndex, ev.Hit.GetIndex())
			case *pb.ProbeEvent_Failed:
				return fmt.Errorf("%w: %s", ErrRemoteFailed, ev.Failed)
			}
		}
	}
	closePC() // no more probes: the dial comes next
	return x.dialOnReady(ip)
}

// dialOnReady waits for the hard side's ready, dials, and sends done.
func (x *session) dialOnReady(ip netip.Addr) error {
	wait := time.NewTimer(readyWait)
	defer wait.Stop()
	for {
		select {
		case <-x.ctx.Done():
			x.done("time out waiting for ready")
			return errors.New("probing: no ready from the hard side in time")
		case <-wait.C:
			x.done("no ready")
			return errors.New("probing: no ready from the hard side in time")
		case ev, ok := <-x.events:
			if !ok {
				return fmt.Errorf("%w: the stream ended before ready", ErrProtocol)
			}
			switch ev := ev.GetEvent().(type) {
			case *pb.ProbeEvent_Failed:
				return fmt.Errorf("%w: %s", ErrRemoteFailed, ev.Failed)
			case *pb.ProbeEvent_Ready:
				port := ev.Ready.GetPort()
				if port == 0 || port > 65535 {
					x.done("ready names no port")
					return fmt.Errorf("%w: ready names port %d", ErrProtocol, port)
				}
				err := x.dial(netip.AddrPortFrom(ip, uint16(port)))
				x.res.Direct = direct(x.l.Host, x.remote)
				if err == nil && !x.res.Direct {
					err = errors.New("the dial left no direct connection")
				}
				if err != nil {
					x.done(err.Error())
					return fmt.Errorf("probing: dialling %s:%d: %w", ip, port, err)
				}
				x.done("")
				return nil
			}
		}
	}
}

// done ends the exchange from the easy side: why it failed ("" when a
// direct connection exists) and its probe count.
func (x *session) done(why string) {
	_ = x.send(&pb.ProbeEvent{Event: &pb.ProbeEvent_Done{Done: &pb.ProbeDone{Error: why, ProbesSent: uint32(x.res.ProbesSent)}}})
}

// dial opens the direct QUIC connection to the hard side's mapping; it
// leaves from the host's QUIC listening socket, the one that probed.
//
// It is host.Connect's forced direct dial, less its address handling:
// Connect keeps the address for peerstore.TempAddrTTL, and identify
// expires every address of that TTL whenever it hears from the remote
// (over the relayed connection, at any moment), which took the address
// away before the dial in 1 of 20 runs. Kept for Timeout instead, it
// stays until the dial.
func (x *session) dial(to netip.AddrPort) error {
	a, err := manet.FromNetAddr(net.UDPAddrFromAddrPort(to))
	if err != nil {
		return err
	}
	x.l.Host.Peerstore().AddAddrs(x.remote, []ma.Multiaddr{a.Encapsulate(quicV1)}, Timeout)
	_, err = x.l.Host.Network().DialPeer(network.WithForceDirectDial(x.ctx, "probe"), x.remote)
	return err
}

// readOpeners reads the shared socket until it is closed and reports the
// first valid opener from the hard side's IP.
func readOpeners(pc net.PacketConn, key []byte, from netip.Addr, sockets int, hits chan<- hit) {
	buf := make([]byte, 64)
	for {
		n, src, err := pc.ReadFrom(buf)
		if err != nil {
			return // closed: a shared socket has no deadlines
		}
		ua, ok := src.(*net.UDPAddr)
		if !ok {
			continue
		}
		ap := norm(ua.AddrPort())
		p, ok := open(key, buf[:n])
		if !ok || p.typ != typeOpener || ap.Addr() != from || int(p.index) >= sockets || ap.Port() == 0 {
			continue
		}
		select {
		case hits <- hit{index: int(p.index), port: ap.Port(), from: ap}:
		default:
		}
	}
}

// norm unmaps an IPv4-mapped IPv6 address.
func norm(ap netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()) }
