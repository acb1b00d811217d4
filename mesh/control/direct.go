package control

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	tptu "github.com/libp2p/go-libp2p/p2p/net/upgrader"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	ma "github.com/multiformats/go-multiaddr"
	mss "github.com/multiformats/go-multistream"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Conn is a control connection to the coordinator made without a libp2p
// host: one TCP connection, secured with libp2p's TLS (the caller's key,
// the site's peer ID checked) and multiplexed with yamux, as a host's
// connection is, and nothing else — no peerstore, resource manager,
// identify, listeners, relay or hole punching. A command that makes a
// call or two and exits (`jumpmesh ls`) pays for a host what it costs to
// build (about 4 ms of CPU, most of it go-libp2p's dependency injection,
// then its TLS certificate) and to close; on this connection it pays for
// the certificate and the handshake only. The coordinator sees an
// ordinary connection of the caller's peer ID: the same gate, the same
// limits, the same answers (it asks for identify; the stream is reset).
//
// It dials only the site's TCP addresses, directly: a coordinator reached
// through the members' lane, a relay or QUIC alone needs a host (the
// caller falls back to one: DialDirect's errors say nothing was sent).
// Answers' coordinator addresses and lanes are the caller's to keep
// (console.Direct does, with member.Files.KeepAnswer).
type Conn struct {
	mc   network.MuxedConn
	site peer.ID
	done chan struct{}
}

// DirectDialTimeout bounds DialDirect's dial and handshake: past it the
// caller is better served by a host's dial (the lane, relays).
const DirectDialTimeout = 2 * time.Second

// DialDirect connects to site at the first of its TCP addresses that
// answers (all dialled at once) and makes the handshakes. Its errors are
// NotSent: no request has left.
func DialDirect(ctx context.Context, key crypto.PrivKey, site peer.ID, addrs []ma.Multiaddr) (*Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, DirectDialTimeout)
	defer cancel()
	nc, err := dialFirst(ctx, addrs)
	if err != nil {
		return nil, catalog.Errorf(catalog.CodeCoordinatorDown, "(%s: %w)", site, notSent{err})
	}
	c, err := upgrade(ctx, nc, key, site)
	if err != nil {
		nc.Close()
		return nil, catalog.Errorf(catalog.CodeCoordinatorDown, "(%s: %w)", site, notSent{err})
	}
	return c, nil
}

// upgrade secures nc with TLS and multiplexes it, as a host's upgrader
// does for an outbound connection.
func upgrade(ctx context.Context, nc net.Conn, key crypto.PrivKey, site peer.ID) (*Conn, error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	if err := mss.SelectProtoOrFail(libp2ptls.ID, nc); err != nil {
		return nil, fmt.Errorf("security negotiation: %w", err)
	}
	tr, err := libp2ptls.New(libp2ptls.ID, key, []tptu.StreamMuxer{{ID: yamux.ID, Muxer: yamux.DefaultTransport}})
	if err != nil {
		return nil, err
	}
	sc, err := tr.SecureOutbound(ctx, nc, site)
	if err != nil {
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	switch sc.ConnState().StreamMultiplexer {
	case yamux.ID:
	case "":
		if err := mss.SelectProtoOrFail(yamux.ID, sc); err != nil {
			return nil, fmt.Errorf("muxer negotiation: %w", err)
		}
	default:
		return nil, fmt.Errorf("the coordinator chose muxer %q", sc.ConnState().StreamMultiplexer)
	}
	_ = nc.SetDeadline(time.Time{})
	mc, err := yamux.DefaultTransport.NewConn(sc, false, nil)
	if err != nil {
		return nil, err
	}
	c := &Conn{mc: mc, site: site, done: make(chan struct{})}
	go c.refuseStreams()
	return c, nil
}

// refuseStreams resets every stream the coordinator opens (identify):
// this connection serves nothing.
func (c *Conn) refuseStreams() {
	defer close(c.done)
	for {
		s, err := c.mc.AcceptStream()
		if err != nil {
			return
		}
		s.Reset()
	}
}

// Call sends req on a new stream and returns the response body, as Call
// does on a host's connection.
func (c *Conn) Call(ctx context.Context, req *pb.Request) (*pb.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	s, err := c.mc.OpenStream(ctx)
	if err != nil {
		return nil, catalog.Errorf(catalog.CodeCoordinatorDown, "(%s: %w)", c.site, notSent{err})
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	// The protocol's name goes with the request, and its answer is read
	// before the response, as a host's NewStream does.
	ls := mss.NewMSSelect(s, Protocol)
	if err := writeRequest(ls, req); err != nil {
		s.Reset()
		return nil, catalog.Errorf(catalog.CodeCoordinatorDown, "(%s: sending the request: %w)", c.site, err)
	}
	_ = s.CloseWrite()
	resp, err := readResponse(ls)
	if err != nil {
		s.Reset()
		return nil, catalog.Errorf(catalog.CodeCoordinatorDown, "(%s: reading the response: %w)", c.site, err)
	}
	s.Close()
	if resp.GetError() != nil {
		return nil, catalog.ErrorFromPB(resp.GetError())
	}
	return resp, nil
}

// Close closes the connection.
func (c *Conn) Close() error {
	err := c.mc.Close()
	<-c.done
	return err
}

// dialFirst dials every TCP address of addrs at once and keeps the first
// connection made.
func dialFirst(ctx context.Context, addrs []ma.Multiaddr) (net.Conn, error) {
	var targets []string
	for _, a := range addrs {
		if t, ok := tcpTarget(a); ok {
			targets = append(targets, t)
		}
	}
	if len(targets) == 0 {
		return nil, errors.New("no TCP address to dial directly")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		c   net.Conn
		err error
	}
	results := make(chan result, len(targets))
	var wg sync.WaitGroup
	for _, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", t)
			results <- result{c, err}
		}()
	}
	go func() { wg.Wait(); close(results) }()
	var errs []error
	var won net.Conn
	for r := range results {
		switch {
		case r.err != nil:
			errs = append(errs, r.err)
		case won == nil:
			won = r.c
			cancel() // the others give up; those already made are closed below
		default:
			r.c.Close()
		}
	}
	if won == nil {
		return nil, errors.Join(errs...)
	}
	return won, nil
}

// tcpTarget is a's host:port when a is a direct TCP address (IP or DNS
// name, no relay, no further protocol but the site's /p2p).
func tcpTarget(a ma.Multiaddr) (string, bool) {
	var host, port string
	ok := true
	n := 0
	ma.ForEach(a, func(c ma.Component) bool {
		switch n {
		case 0:
			switch c.Protocol().Code {
			case ma.P_IP4, ma.P_IP6, ma.P_DNS, ma.P_DNS4, ma.P_DNS6:
				host = c.Value()
			default:
				ok = false
			}
		case 1:
			if c.Protocol().Code != ma.P_TCP {
				ok = false
			}
			port = c.Value()
		default:
			if c.Protocol().Code != ma.P_P2P {
				ok = false
			}
		}
		n++
		return ok
	})
	if !ok || n < 2 {
		return "", false
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", false
	}
	return net.JoinHostPort(host, port), true
}
