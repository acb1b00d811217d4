package peer

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/channel"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// fwdDefaultDialTimeout applies when ServeForward is given no timeout.
const fwdDefaultDialTimeout = 10 * time.Second

// fwdUnreachable is the catalog code of a failed dial; the detail names
// the target.
const fwdUnreachable = catalog.CodeForwardUnreachable

// ServeForward serves an accepted forward channel (after Ready): it dials
// open's host:port from this host ("localhost" is the host itself; any
// other name or address is reached from here, e.g. a machine on its LAN),
// tells the console the outcome with channel.SendStatus, and then splices
// raw bytes both ways with half-close until both directions end. It closes
// the channel. The error is the dial's catalog error or what broke the
// splice; a forward that ran to its end returns nil. A console's
// ForwardOpen.bulk is granted when the connection allows (a daemon asks
// its site's bulk-connections setting first: serveForward).
func ServeForward(ctx context.Context, ch *channel.Channel, open *pb.ForwardOpen, dialTimeout time.Duration) error {
	return serveForward(ctx, ch, open, dialTimeout, nil)
}

// ServeForwardWithRelays is ServeForward on a peer whose host h may ask the
// relay of a relayed session for a splice slot (bulk.go): a relayed
// forward that asks for a bulk connection then gets one through the
// relay's splice when the relay serves it, and the channel otherwise.
func ServeForwardWithRelays(ctx context.Context, ch *channel.Channel, open *pb.ForwardOpen, dialTimeout time.Duration, h host.Host) error {
	return serveForward(ctx, ch, open, dialTimeout, &bulkConnections{host: h})
}

// serveForward is ServeForward with the site's bulk-connections setting:
// when b says off the peer makes no offer and opens no bulk listener,
// whatever open asks. b nil grants what open asks.
func serveForward(ctx context.Context, ch *channel.Channel, open *pb.ForwardOpen, dialTimeout time.Duration, b *bulkConnections) error {
	conn, err := fwdDial(ctx, open, dialTimeout)
	if err != nil {
		_ = ch.SendStatus(err)
		_ = ch.Close()
		return err
	}
	if open.GetBulk() && b != nil {
		b.asked.Add(1)
	}
	if open.GetBulk() && (b == nil || b.on()) {
		if sc, r := b.relaySplice(ctx, ch); sc != nil {
			b.offered.Add(1)
			b.relayed.Add(1)
			return serveRelayedBulkForward(ctx, ch, conn, sc, r)
		}
		if l := bulkListenerFor(ch); l != nil {
			if b != nil {
				b.offered.Add(1)
			}
			return serveBulkForward(ctx, ch, conn, l)
		}
	}
	if err := ch.SendStatus(nil); err != nil {
		_ = conn.Close()
		_ = ch.Reset()
		return err
	}
	_, _, err = ch.Splice(ctx, conn)
	return err
}

// serveBulkForward offers the console a bulk connection for the forward
// whose target is conn (mesh/channel/bulk.go) on listener l and carries it
// on the path the console chooses (carryBulkForward).
func serveBulkForward(ctx context.Context, ch *channel.Channel, conn net.Conn, l *bulkListener) error {
	o := channel.NewBulkOffer()
	got := l.expect(o)
	settle := func(*channel.BulkConn) { // the offer is settled: the listener may close
		l.forget(o.Ticket)
		select { // taken by a console after this forward stopped waiting for it
		case bc := <-got:
			_ = bc.Close()
		default:
		}
		l.release()
	}
	return carryBulkForward(ctx, ch, conn, func() error { return ch.SendBulkOffer(o, l.addr) }, got, settle)
}

// serveRelayedBulkForward offers the console a bulk connection through
// the relay's splice: sc is this peer's connection to the splice listener,
// on r's slot (mesh/channel/bulkrelay.go). The console's ticket and hello
// arrive on sc once the relay paired it with the console's connection.
func serveRelayedBulkForward(ctx context.Context, ch *channel.Channel, conn, sc net.Conn, r *channel.BulkRelay) error {
	o, got := acceptRelayed(sc)
	settle := func(bc *channel.BulkConn) {
		if bc == nil { // declined or not arrived: AcceptBulk ends
			_ = sc.Close()
		}
	}
	return carryBulkForward(ctx, ch, conn, func() error { return ch.SendBulkRelayOffer(o, *r) }, got, settle)
}

// carryBulkForward sends an offer of a bulk connection (send) and carries
// the forward whose target is conn on the path the console chooses: the
// bulk connection, which arrives on got, or the channel as without an
// offer. settle is called once, when the offer is settled, with the bulk
// connection taken (nil if none). Bytes carried on the bulk connection
// count as the channel's.
func carryBulkForward(ctx context.Context, ch *channel.Channel, conn net.Conn, send func() error, got <-chan *channel.BulkConn, settle func(*channel.BulkConn)) error {
	var once sync.Once
	var taken *channel.BulkConn
	release := func() { once.Do(func() { settle(taken) }) }
	defer release()
	if err := send(); err != nil {
		_ = conn.Close()
		_ = ch.Reset()
		return err
	}
	_ = ch.Stream().SetReadDeadline(time.Now().Add(channel.HandshakeTimeout))
	var choice [1]byte
	if _, err := io.ReadFull(ch, choice[:]); err != nil {
		_ = conn.Close()
		_ = ch.Reset()
		return err
	}
	_ = ch.Stream().SetReadDeadline(time.Time{})
	if choice[0] != channel.BulkChosen {
		release()
		_, _, err := ch.Splice(ctx, conn)
		return err
	}
	var bc *channel.BulkConn
	select {
	case bc = <-got:
	case <-time.After(channel.BulkHandshakeTimeout):
	case <-ctx.Done():
	}
	taken = bc
	release()
	if bc == nil {
		_ = conn.Close()
		_ = ch.Reset()
		return catalog.Errorf(catalog.CodeSessionInternal, "(the console chose a bulk connection that did not arrive)")
	}
	// The console closes the channel when the forward ends; a reset (its
	// context ended) ends the bulk connection too.
	go func() {
		if _, err := io.Copy(io.Discard, ch); err != nil {
			_ = bc.Close()
		}
	}()
	in, out, err := bc.Splice(ctx, conn)
	ch.AddCarried(in, out)
	_ = ch.Close()
	return err
}

// bulkListener accepts bulk connections on the peer's own address of a
// direct TCP session connection: one per address, open only while offers
// are pending (forwards being set up), on a port of the kernel's choosing.
// It takes only connections whose ticket and hello match an offer made on
// a forward channel (channel.AcceptBulk) and hands each to its forward.
type bulkListener struct {
	key     string
	ln      *net.TCPListener
	refs    int // offers not settled; guarded by bulkListeners.mu
	addr    *net.TCPAddr
	offers  channel.BulkOffers
	mu      sync.Mutex
	waiting map[[channel.BulkTicketSize]byte]chan *channel.BulkConn
	// handshakes bounds the connections in their hello at once: a stranger
	// opening many gets the rest closed at once.
	handshakes chan struct{}
}

// bulkHandshakes is how many connections a bulk listener reads hellos from
// at once.
const bulkHandshakes = 64

var bulkListeners struct {
	mu   sync.Mutex
	byIP map[string]*bulkListener
}

// bulkListenerFor is the bulk listener on this peer's address of ch's
// connection, started when none is open, or nil when the connection is
// relayed (relaySplice) or not TCP, or no listener can be had there. The caller makes
// one offer on it and calls release once the offer is settled.
func bulkListenerFor(ch *channel.Channel) *bulkListener {
	c := ch.Stream().Conn()
	if c.Stat().Limited {
		return nil
	}
	if _, err := c.RemoteMultiaddr().ValueForProtocol(ma.P_CIRCUIT); err == nil {
		return nil // relayed: its local address is the relay hop's (relaySplice)
	}
	na, err := manet.ToNetAddr(c.LocalMultiaddr())
	if err != nil {
		return nil
	}
	local, ok := na.(*net.TCPAddr)
	if !ok || local.IP.IsUnspecified() {
		return nil
	}
	key := local.IP.String()
	bulkListeners.mu.Lock()
	defer bulkListeners.mu.Unlock()
	if l := bulkListeners.byIP[key]; l != nil {
		l.refs++
		return l
	}
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: local.IP, Zone: local.Zone})
	if err != nil {
		return nil
	}
	l := &bulkListener{
		key:        key,
		ln:         ln,
		refs:       1,
		addr:       ln.Addr().(*net.TCPAddr),
		waiting:    map[[channel.BulkTicketSize]byte]chan *channel.BulkConn{},
		handshakes: make(chan struct{}, bulkHandshakes),
	}
	if bulkListeners.byIP == nil {
		bulkListeners.byIP = map[string]*bulkListener{}
	}
	bulkListeners.byIP[key] = l
	go l.serve(ln)
	return l
}

// release settles one offer; the last closes the listener.
func (l *bulkListener) release() {
	bulkListeners.mu.Lock()
	defer bulkListeners.mu.Unlock()
	if l.refs--; l.refs == 0 {
		delete(bulkListeners.byIP, l.key)
		_ = l.ln.Close()
	}
}

// expect offers o for BulkHandshakeTimeout twice over (the console's status
// read, dial and hello) and returns where its connection will arrive.
func (l *bulkListener) expect(o channel.BulkOffer) <-chan *channel.BulkConn {
	got := make(chan *channel.BulkConn, 1)
	l.mu.Lock()
	l.waiting[o.Ticket] = got
	l.mu.Unlock()
	l.offers.Add(o, 2*channel.BulkHandshakeTimeout)
	return got
}

// forget withdraws the offer with ticket t: from then on no connection is
// delivered for it.
func (l *bulkListener) forget(t [channel.BulkTicketSize]byte) {
	l.offers.Withdraw(t)
	l.mu.Lock()
	delete(l.waiting, t)
	l.mu.Unlock()
}

func (l *bulkListener) serve(ln *net.TCPListener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		select {
		case l.handshakes <- struct{}{}:
		default:
			_ = conn.Close()
			continue
		}
		go func() {
			bc, err := channel.AcceptBulk(conn, &l.offers)
			<-l.handshakes
			if err != nil {
				return
			}
			l.mu.Lock()
			defer l.mu.Unlock()
			got := l.waiting[bc.Ticket]
			delete(l.waiting, bc.Ticket)
			if got == nil {
				_ = bc.Close()
				return
			}
			got <- bc // buffered: never blocks
		}()
	}
}

// fwdDial connects to the forward's target. Its errors are what the
// technician reads, so they name the target as the peer sees it.
func fwdDial(ctx context.Context, open *pb.ForwardOpen, timeout time.Duration) (net.Conn, error) {
	if open.GetHost() == "" || open.GetPort() == 0 || open.GetPort() > 65535 {
		return nil, catalog.Errorf(catalog.CodeInvalidArgument, "(forward target %q port %d)", open.GetHost(), open.GetPort())
	}
	if timeout <= 0 {
		timeout = fwdDefaultDialTimeout
	}
	addr := net.JoinHostPort(open.GetHost(), strconv.Itoa(int(open.GetPort())))
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	switch {
	case err == nil:
		return conn, nil
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded):
		return nil, catalog.Errorf(fwdUnreachable, "(the peer got no answer from %s within %s)", addr, timeout)
	default:
		return nil, catalog.Errorf(fwdUnreachable, "(the peer could not connect to %s: %w)", addr, err)
	}
}
