package mesh

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/transport/quicreuse"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"go.uber.org/fx"
)

// quicConns are the QUIC connection managers of the hosts NewHost built,
// by host ID, so that SharedUDP can lend a host's QUIC listening socket.
var quicConns sync.Map // peer.ID → *quicreuse.ConnManager

// keepQUICConns is NewHost's option that records the host's QUIC
// connection manager under its ID once libp2p has built it.
func keepQUICConns(id peer.ID) libp2p.Option {
	return libp2p.WithFxOption(fx.Invoke(func(cm *quicreuse.ConnManager, lc fx.Lifecycle) {
		quicConns.Store(id, cm)
		lc.Append(fx.StopHook(func() { quicConns.CompareAndDelete(id, cm) }))
	}))
}

// SharedUDP is a packet connection on h's QUIC listening socket of
// network ("udp4" or "udp6"): what it sends leaves from the port the NAT
// mapped for the host's QUIC connections, and it reads the datagrams that
// are not QUIC (first byte's fixed bit clear). Port-mapping probing
// (mesh/probe) sends its probes on it. Close it when done; the socket
// itself stays the host's. Reads end when it is closed; it has no read
// deadlines (libp2p's cannot be cleared and race with reads).
//
// Datagrams that are not QUIC are queued for reading (up to quic-go's
// small queue) from the moment SharedUDP returns; before, quic-go drops
// them.
func SharedUDP(h host.Host, network string) (net.PacketConn, error) {
	v, ok := quicConns.Load(h.ID())
	if !ok {
		return nil, errors.New("the host has no QUIC transport of its own")
	}
	for _, l := range h.Network().ListenAddresses() {
		if _, err := l.ValueForProtocol(ma.P_QUIC_V1); err != nil {
			continue
		}
		na, err := manet.ToNetAddr(l.Decapsulate(ma.StringCast("/quic-v1")))
		if err != nil {
			continue
		}
		ua, ok := na.(*net.UDPAddr)
		if !ok || (network == "udp4") != (ua.IP.To4() != nil) {
			continue
		}
		pc, err := v.(*quicreuse.ConnManager).SharedNonQUICPacketConn(network, ua)
		if err != nil {
			return nil, err
		}
		// quic-go keeps datagrams that are not QUIC only once somebody
		// has read: one read that ends at once starts the queue.
		_ = pc.SetReadDeadline(time.Unix(1, 0))
		_, _, _ = pc.ReadFrom(make([]byte, 1))
		_ = pc.SetReadDeadline(time.Now().Add(100 * 365 * 24 * time.Hour))
		return sharedUDP{pc}, nil
	}
	return nil, fmt.Errorf("the host listens on no %s QUIC address", network)
}

// sharedUDP is SharedUDP's connection: reads end on Close only.
type sharedUDP struct{ net.PacketConn }

var errNoDeadline = errors.New("a shared QUIC socket has no deadlines: close it to end reads")

func (sharedUDP) SetDeadline(time.Time) error      { return errNoDeadline }
func (sharedUDP) SetReadDeadline(time.Time) error  { return errNoDeadline }
func (sharedUDP) SetWriteDeadline(time.Time) error { return errNoDeadline }
