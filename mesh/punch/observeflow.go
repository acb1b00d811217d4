package punch

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/sec"
	"github.com/libp2p/go-libp2p/core/transport"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/upgrader"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"github.com/libp2p/go-reuseport"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// flowTransport is the TCP transport a fresh observation is dialled with:
// from the host's listening port, like the host's own transport, but
// authenticated with a key made for the one flow, not the host's.
//
// Under the host's key the observer's swarm files the flow as one more
// connection to this host, and go-libp2p opens a stream to a peer on the
// connection with the most open streams, else the newest: the observation
// flow, which the observer's own identify stream keeps busy and which
// nobody here serves (it is not in this host's swarm). A relay opening a
// circuit's stop stream there in the tens of milliseconds before the flow
// closed answered the console CONNECTION_FAILED (203) — the lab's grid, 3
// runs of 3: con-udp-blocked could not reach peer-sequential just after
// four consoles' punches had each observed afresh. Under a key of its own
// the flow is a stranger's to the observer, and nothing meant for this
// host can land on it; the observer is still authenticated (o.ID), which
// is all the observation's trust rests on.
func flowTransport(h host.Host, raddr ma.Multiaddr) (transport.Transport, error) {
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, err
	}
	muxers := []upgrader.StreamMuxer{{ID: yamux.ID, Muxer: yamux.DefaultTransport}}
	security, err := noise.New(noise.ID, key, muxers)
	if err != nil {
		return nil, err
	}
	up, err := upgrader.New([]sec.SecureTransport{security}, muxers, nil, nil, nil)
	if err != nil {
		return nil, err
	}
	d := listenPortDialer{local: listenTCPAddr(h, raddr)}
	return tcp.NewTCPTransport(up, nil, nil,
		tcp.WithDialerForAddr(func(ma.Multiaddr) (tcp.ContextDialer, error) { return d, nil }))
}

// listenTCPAddr is the host's TCP listening address of raddr's IP family,
// or nil.
func listenTCPAddr(h host.Host, raddr ma.Multiaddr) *net.TCPAddr {
	v4 := isIP4(raddr)
	for _, l := range h.Network().ListenAddresses() {
		if q, _ := transportPort(l); q != "tcp" || isIP4(l) != v4 {
			continue
		}
		if a, err := manet.ToNetAddr(l); err == nil {
			if t, ok := a.(*net.TCPAddr); ok {
				return t
			}
		}
	}
	return nil
}

func isIP4(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_IP4)
	return err == nil
}

// listenPortDialer dials from the listening port (SO_REUSEPORT, as the
// host's TCP transport does) and, when that port cannot carry the flow
// (a flow to the same observer still in TIME_WAIT), from any port:
// observeFresh then decides whether such a flow tells anything.
type listenPortDialer struct{ local *net.TCPAddr }

func (d listenPortDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if d.local != nil {
		c, err := (&net.Dialer{LocalAddr: d.local, Control: reuseport.Control}).DialContext(ctx, network, addr)
		if err == nil || ctx.Err() != nil || !(errors.Is(err, syscall.EADDRINUSE) || errors.Is(err, syscall.EADDRNOTAVAIL)) {
			return c, err
		}
	}
	var any net.Dialer
	c, err := any.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("dialling the observer: %w", err)
	}
	return c, nil
}
