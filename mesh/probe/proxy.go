package probe

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// proxyTick is how often a proxy checks whether it should end.
var proxyTick = time.Second

// proxies counts the running proxies (tests wait for theirs to end).
var proxies atomic.Int32

// proxy carries one QUIC connection between the socket whose NAT mapping
// the easy side reached (outer) and the host's own QUIC listener (through
// inner). It forwards only datagrams from the address of the hit, and
// never one of the probe packets. It outlives the exchange: it ends after
// idle without a datagram either way, when alive says so, or on stop.
type proxy struct {
	outer, inner *net.UDPConn
	from         netip.AddrPort
	last         atomic.Int64 // unix nanoseconds of the last datagram
	carried      atomic.Bool  // a connection came through it (the exchange saw it, or alive did)
	once         sync.Once
	quit         chan struct{}
	wg           sync.WaitGroup
}

// startProxy starts proxying outer (from from only) ↔ to. alive is asked
// every proxyTick with the inner socket's address (what the QUIC listener
// sees as the remote) and whether a connection came through already.
func startProxy(outer *net.UDPConn, from, to netip.AddrPort, idle time.Duration, alive func(inner netip.AddrPort, carried *atomic.Bool) bool) (*proxy, error) {
	inner, err := net.DialUDP(udpNetwork(to.Addr()), nil, net.UDPAddrFromAddrPort(to))
	if err != nil {
		_ = outer.Close()
		return nil, err
	}
	from = norm(from)
	p := &proxy{outer: outer, inner: inner, from: from, quit: make(chan struct{})}
	p.last.Store(time.Now().UnixNano())
	innerAddr := norm(inner.LocalAddr().(*net.UDPAddr).AddrPort())
	proxies.Add(1)
	p.wg.Go(func() { // remote → listener
		buf := make([]byte, 2048)
		for {
			n, src, err := outer.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			if norm(src) != from || isProbePacket(buf[:n]) {
				continue
			}
			p.last.Store(time.Now().UnixNano())
			_, _ = inner.Write(buf[:n])
		}
	})
	p.wg.Go(func() { // listener → remote
		buf := make([]byte, 2048)
		for {
			n, err := inner.Read(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue // e.g. the listener's port refused one datagram
			}
			p.last.Store(time.Now().UnixNano())
			_, _ = outer.WriteToUDPAddrPort(buf[:n], from)
		}
	})
	p.wg.Go(func() {
		t := time.NewTicker(proxyTick)
		defer t.Stop()
		for {
			select {
			case <-p.quit:
				return
			case <-t.C:
				if time.Since(time.Unix(0, p.last.Load())) >= idle || !alive(innerAddr, &p.carried) {
					p.stop()
					return
				}
			}
		}
	})
	go func() {
		p.wg.Wait()
		proxies.Add(-1)
	}()
	return p, nil
}

// stop ends the proxy and closes both sockets; it does not wait.
func (p *proxy) stop() {
	p.once.Do(func() {
		close(p.quit)
		_ = p.outer.Close()
		_ = p.inner.Close()
	})
}

// hostAlive is a proxy's alive for the connection to remote that h
// accepts through it: false once h closed, or once that connection came
// and went (the exchange marks it carried when it sees it: a connection
// may come and go between two ticks).
func hostAlive(h host.Host, remote peer.ID) func(netip.AddrPort, *atomic.Bool) bool {
	done, _ := h.Network().(interface{ Done() <-chan struct{} })
	return func(inner netip.AddrPort, carried *atomic.Bool) bool {
		if done != nil {
			select {
			case <-done.Done():
				return false
			default:
			}
		} else if len(h.Network().ListenAddresses()) == 0 {
			return false
		}
		carries := false
		for _, c := range h.Network().ConnsToPeer(remote) {
			if a, err := manet.ToNetAddr(c.RemoteMultiaddr().Decapsulate(quicV1)); err == nil {
				if ua, ok := a.(*net.UDPAddr); ok && norm(ua.AddrPort()) == inner {
					carries = true
				}
			}
		}
		if carries {
			carried.Store(true)
		}
		return carries || !carried.Load()
	}
}

var quicV1 = ma.StringCast("/quic-v1")

// quicListener is the address of h's QUIC listener of network ("udp4",
// "udp6"), as the proxy reaches it: an unspecified listen IP becomes the
// loopback address.
func quicListener(h host.Host, network string) (netip.AddrPort, error) {
	for _, l := range h.Network().ListenAddresses() {
		rest, last := ma.SplitLast(l)
		if last == nil || last.Code() != ma.P_QUIC_V1 {
			continue
		}
		na, err := manet.ToNetAddr(rest)
		if err != nil {
			continue
		}
		ua, ok := na.(*net.UDPAddr)
		if !ok {
			continue
		}
		ap := ua.AddrPort()
		ip := ap.Addr().Unmap()
		if (network == "udp4") != ip.Is4() {
			continue
		}
		if ip.IsUnspecified() {
			ip = netip.IPv6Loopback()
			if network == "udp4" {
				ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
			}
		}
		return netip.AddrPortFrom(ip, ap.Port()), nil
	}
	return netip.AddrPort{}, fmt.Errorf("the host listens on no %s QUIC address", network)
}
