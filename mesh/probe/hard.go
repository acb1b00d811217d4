package probe

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// testSocketOpened, when set (tests), hears of each socket the hard side
// opens: on loopback there is no NAT, and a socket's mapping is its port.
var testSocketOpened func(index int, port uint16)

// testSent, when set (tests), hears of each packet sent and when.
var testSent func(typ byte, at time.Time)

// hit is a packet that crossed: the hard side's socket index, the hard
// NAT's public port of it, and (own hits) where the packet came from.
type hit struct {
	index int
	port  uint16
	from  netip.AddrPort
}

// hard is the hard side's work: up to n sockets, one opener each towards
// the easy side's mapping, paced OpenerGap; then, on the first hit (a
// probe on a socket, or the easy side's ProbeHit), the proxy of that
// socket to the host's QUIC listener and ready.
func (x *session) hard(remote *pb.ProbeSide, n int) error {
	e, err := netip.ParseAddrPort(remote.GetUdpMapping())
	e = netip.AddrPortFrom(e.Addr().Unmap(), e.Port())
	switch {
	case err != nil || !validIP(e.Addr()) || e.Port() == 0:
		x.fail("the easy side's mapping is not an address")
		return fmt.Errorf("%w: the easy side's mapping %q is not an address", ErrProtocol, remote.GetUdpMapping())
	case x.l.Allowed == nil || !x.l.Allowed(e.Addr()):
		x.fail("the easy side's mapping is not at the address this side may send to")
		return fmt.Errorf("%w: the easy side's mapping %s", ErrNotAllowed, e)
	}
	nw := udpNetwork(e.Addr())
	target, err := quicListener(x.l.Host, nw)
	if err != nil {
		x.fail("no QUIC listener to proxy to")
		return err
	}
	x.startEvents()

	var (
		socks   []*net.UDPConn
		readers sync.WaitGroup
		hits    = make(chan hit, 1)
	)
	// stopReaders ends every socket's reader and closes every socket but
	// keep (-1: all).
	stopReaders := func(keep int) {
		for i, c := range socks {
			if i == keep {
				_ = c.SetReadDeadline(time.Now())
			} else {
				_ = c.Close()
			}
		}
		readers.Wait()
	}
	kept := -1
	defer func() {
		if kept < 0 {
			stopReaders(-1)
		}
	}()

	gap := time.NewTimer(0)
	defer gap.Stop()
	var got hit
	found := false
	for !found {
		select {
		case <-x.ctx.Done():
			x.fail("time out")
			return fmt.Errorf("%w after %d openers", ErrNoHit, x.res.OpenersSent)
		case <-gap.C:
			if len(socks) >= n {
				continue
			}
			c, err := net.ListenUDP(nw, nil)
			if err != nil {
				x.log.Debug("probe socket", logErr, err)
				n = len(socks) // no more sockets: probe with those open
				continue
			}
			i := len(socks)
			socks = append(socks, c)
			if testSocketOpened != nil {
				testSocketOpened(i, uint16(c.LocalAddr().(*net.UDPAddr).Port))
			}
			readers.Go(func() { readProbes(c, i, x.key, e.Addr(), hits) })
			if _, err := c.WriteToUDPAddrPort(seal(x.key, packet{typ: typeOpener, index: uint16(i)}), e); err == nil {
				x.res.OpenersSent++
			}
			if testSent != nil {
				testSent(typeOpener, time.Now())
			}
			gap.Reset(OpenerGap)
		case h := <-hits:
			got, found = h, true
			x.tellHit(h)
		case ev, ok := <-x.events:
			if !ok {
				return fmt.Errorf("%w: the stream ended before a hit", ErrProtocol)
			}
			switch ev := ev.GetEvent().(type) {
			case *pb.ProbeEvent_Hit:
				i, port := ev.Hit.GetIndex(), ev.Hit.GetPort()
				if i >= uint32(len(socks)) || port == 0 || port > 65535 {
					continue // not a socket of ours: ignored
				}
				// The easy side's probe to port left its NAT before the
				// opener reached it: its mapping E is where the dial
				// comes from.
				got, found = hit{index: int(i), port: uint16(port), from: e}, true
				x.log.Debug("probe hit (easy side)", logRemote, x.remote, logPort, port, logIndex, i)
			case *pb.ProbeEvent_Failed:
				return fmt.Errorf("%w: %s", ErrRemoteFailed, ev.Failed)
			case *pb.ProbeEvent_Done:
				x.res.ProbesSent = int(min(ev.Done.GetProbesSent(), MaxProbes))
				return fmt.Errorf("%w: %s", ErrNoHit, ev.Done.GetError())
			}
		}
	}
	x.res.Hit = true
	kept = got.index
	stopReaders(kept)
	return x.proxyHit(socks[kept], got, target)
}

// proxyHit proxies the socket of the hit to the host's QUIC listener,
// sends ready, and waits for the easy side's done.
func (x *session) proxyHit(sock *net.UDPConn, got hit, target netip.AddrPort) error {
	_ = sock.SetReadDeadline(time.Time{})
	p, err := startProxy(sock, got.from, target, ProxyIdle, hostAlive(x.l.Host, x.remote))
	if err != nil {
		_ = sock.Close()
		x.fail("no proxy")
		return fmt.Errorf("starting the probe proxy: %w", err)
	}
	if err := x.send(&pb.ProbeEvent{Event: &pb.ProbeEvent_Ready{Ready: &pb.ProbeHit{Port: uint32(got.port), Index: uint32(got.index)}}}); err != nil {
		p.stop()
		return fmt.Errorf("sending ready: %w", err)
	}
	for {
		select {
		case <-x.ctx.Done():
			p.stop()
			return errors.New("probing: no done from the easy side in time")
		case ev, ok := <-x.events:
			if !ok {
				return x.directOrStop(p, "the stream ended before done")
			}
			switch ev := ev.GetEvent().(type) {
			case *pb.ProbeEvent_Failed:
				p.stop()
				return fmt.Errorf("%w: %s", ErrRemoteFailed, ev.Failed)
			case *pb.ProbeEvent_Done:
				x.res.ProbesSent = int(min(ev.Done.GetProbesSent(), MaxProbes))
				if ev.Done.GetError() != "" {
					p.stop()
					return fmt.Errorf("%w: the dial failed: %s", ErrRemoteFailed, ev.Done.GetError())
				}
				return x.directOrStop(p, "no direct connection after the easy side's dial")
			}
		}
	}
}

// directOrStop waits a little for the direct connection the proxy
// carries to show on this side (the QUIC handshake ends here a moment
// after the dialer's); without it, the proxy stops.
func (x *session) directOrStop(p *proxy, why string) error {
	deadline := time.Now().Add(directWait)
	for !direct(x.l.Host, x.remote) {
		if time.Now().After(deadline) || x.ctx.Err() != nil {
			p.stop()
			return errors.New("probing: " + why)
		}
		select {
		case <-x.ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	x.res.Direct = true
	p.carried.Store(true) // through the proxy or not: it ends with no connection through it
	return nil
}

// readProbes reads socket i until it is closed or its deadline passes,
// and reports the first valid probe from the easy side's IP.
func readProbes(c *net.UDPConn, i int, key []byte, from netip.Addr, hits chan<- hit) {
	buf := make([]byte, 64)
	for {
		n, src, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		p, ok := open(key, buf[:n])
		if !ok || p.typ != typeProbe || src.Addr() != from || p.port < minPort {
			continue
		}
		select {
		case hits <- hit{index: i, port: p.port, from: src}:
		default: // another hit came first
		}
	}
}
