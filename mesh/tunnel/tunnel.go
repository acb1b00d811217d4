package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/frame"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Protocol is the tunnel protocol's ID.
const Protocol protocol.ID = "/jumpmesh/jumpoint/1.0.0"

// MaxOpen bounds a TunnelOpen (a grant and an installer key fit easily).
const MaxOpen = 16 << 10

// OpenTimeout bounds steps 1 and 2: reading the open, dialing the target,
// and, on the caller's side, waiting for the reply.
const OpenTimeout = 10 * time.Second

// Dial opens a tunnel through jumpoint j to the open's target and returns
// it as a net.Conn whose addresses are TCP addresses (libp2p's TCP
// transport turns them into multiaddrs). h must reach j already or be able
// to dial it; streams over relayed connections are allowed.
func Dial(ctx context.Context, h host.Host, j peer.ID, open *pb.TunnelOpen) (net.Conn, error) {
	remote, err := net.ResolveTCPAddr("tcp", open.GetTarget())
	if err != nil {
		return nil, catalog.Errorf(catalog.CodeInvalidArgument, "(tunnel target %q: %v)", open.GetTarget(), err)
	}
	ctx, cancel := context.WithTimeout(ctx, OpenTimeout)
	defer cancel()
	ctx = network.WithAllowLimitedConn(ctx, "jumpoint tunnel")
	if err := connect(ctx, h, j); err != nil {
		return nil, catalog.Errorf(catalog.CodeJumpointUnreachable, "(jumpoint %s: %v)", j, err)
	}
	s, err := h.NewStream(ctx, j, Protocol)
	if err != nil {
		return nil, catalog.Errorf(catalog.CodeJumpointUnreachable, "(jumpoint %s: %v)", j, err)
	}
	dl, _ := ctx.Deadline()
	_ = s.SetDeadline(dl)
	if err := frame.NewWriter(s).WriteMsg(open); err != nil {
		s.Reset()
		return nil, catalog.Errorf(catalog.CodeJumpointUnreachable, "(jumpoint %s: sending the open: %v)", j, err)
	}
	var reply pb.TunnelReply
	if err := readExact(s, MaxOpen, &reply); err != nil {
		s.Reset()
		return nil, catalog.Errorf(catalog.CodeJumpointUnreachable, "(jumpoint %s: reading the reply: %v)", j, err)
	}
	if reply.GetError() != nil {
		s.Reset()
		return nil, catalog.ErrorFromPB(reply.GetError())
	}
	_ = s.SetDeadline(time.Time{})
	return &Conn{Stream: s, remote: remote}, nil
}

// ConnectTimeout bounds the connection to a jumpoint that Dial makes when
// the host has none: its TCP connect, security handshake and identify.
const ConnectTimeout = 15 * time.Second

// connect makes sure h is connected to jumpoint j, waiting at most until
// ctx ends. The connection attempt is bounded by ConnectTimeout, not by
// ctx, and goes on when ctx ends first: a tunnel dial is the raw dial of
// libp2p's TCP transport, whose context is the whole outer dial's (5 s for
// a LAN address, tunnel and inner handshake together), and cutting the
// connection to the jumpoint at that deadline threw away its handshake
// half done. When a few hundred peers behind a jumpoint connect at once
// (all of them after the jumpoint restarts) the handshakes share the CPU
// and each takes longer than that budget; every retry then started over
// and most peers never got through (docs/performance.md, "Jumpoints").
// Finishing the connection lets the retry find it ready: a peer keeps its
// jumpoint connection for as long as it runs anyway.
func connect(ctx context.Context, h host.Host, j peer.ID) error {
	if h.Network().Connectedness(j) == network.Connected {
		return nil
	}
	done := make(chan error, 1)
	go func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ConnectTimeout)
		defer cancel()
		done <- h.Connect(cctx, peer.AddrInfo{ID: j})
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Conn is a tunnel as a net.Conn.
type Conn struct {
	network.Stream
	remote *net.TCPAddr
}

// LocalAddr is the unspecified TCP address: the caller has no address on
// the target's network.
func (c *Conn) LocalAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4zero} }

// RemoteAddr is the target.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// Close closes the stream both ways: the jumpoint then closes the TCP
// connection.
func (c *Conn) Close() error { return c.Stream.Close() }

// Authorize decides whether remote may open a tunnel to open's target. It
// returns a catalog error, which the caller receives.
type Authorize func(remote peer.ID, open *pb.TunnelOpen) error

// Config is a Server's.
type Config struct {
	Authorize Authorize
	// MaxTunnels bounds the tunnels open at once (0: 1024).
	MaxTunnels int
	// DialTimeout bounds one TCP dial (0: OpenTimeout).
	DialTimeout time.Duration
	// MaxBytesPerSecond bounds each direction of every tunnel: a token
	// bucket (a burst of up to 32 KiB) between reading a direction's bytes
	// and writing them on. 0 is unlimited.
	MaxBytesPerSecond int64
	// MaxLinkHandshakes bounds peer links not yet past their proof
	// (0: DefaultMaxLinkHandshakes); more wait in the listen queue.
	MaxLinkHandshakes int
	// MaxLinksPerPeer bounds the links one caller holds at once (0:
	// DefaultMaxLinksPerPeer); a libp2p caller's streams are bounded by
	// the host's resource manager instead.
	MaxLinksPerPeer int
	Log             *slog.Logger
}

// Stats are a server's counters.
type Stats struct {
	Open, Total, Refused, Bytes uint64
}

// Server serves the tunnel protocol on a host.
type Server struct {
	h    host.Host
	cfg  Config
	slot chan struct{}
	wg   sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	live      map[caller]*liveTunnel
	listeners []net.Listener        // of ServeLinks
	links     map[peer.ID]*linkPeer // live links by caller (link.go)

	open, total, refused, bytes atomic.Uint64
}

// Serve starts serving tunnels on h. Close stops it.
func Serve(h host.Host, cfg Config) *Server {
	if cfg.MaxTunnels <= 0 {
		cfg.MaxTunnels = 1024
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = OpenTimeout
	}
	if cfg.MaxLinksPerPeer <= 0 {
		cfg.MaxLinksPerPeer = DefaultMaxLinksPerPeer
	}
	if cfg.MaxLinkHandshakes <= 0 {
		cfg.MaxLinkHandshakes = DefaultMaxLinkHandshakes
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{h: h, cfg: cfg, slot: make(chan struct{}, cfg.MaxTunnels), live: map[caller]*liveTunnel{},
		links: map[peer.ID]*linkPeer{}}
	h.SetStreamHandler(Protocol, s.handle)
	return s
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{Open: s.open.Load(), Total: s.total.Load(), Refused: s.refused.Load(), Bytes: s.bytes.Load()}
}

// Close stops accepting tunnels, ends the open ones and waits for them.
func (s *Server) Close() {
	s.h.RemoveStreamHandler(Protocol)
	s.mu.Lock()
	s.closed = true
	for _, l := range s.listeners {
		l.Close()
	}
	for st, t := range s.live {
		t.end(st)
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// CloseWhere ends every tunnel, open or being opened, for which match
// (called with the caller's peer ID and its open message) is true, and
// returns how many it ended. The jumpoint calls it after each ACL refresh
// with the new ACL's verdict, so a tunnel authorized by an older ACL does
// not outlive it: a tunnel whose open was read before CloseWhere is
// judged by it, and one read after is authorized against the new ACL.
// match runs under the server's lock and must not call the server.
func (s *Server) CloseWhere(match func(remote peer.ID, open *pb.TunnelOpen) bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for st, t := range s.live {
		if t.open != nil && !t.ended() && match(t.remote, t.open) {
			t.end(st)
			n++
		}
	}
	return n
}

func (s *Server) handle(st network.Stream) {
	s.serve(st, st.Conn().RemotePeer(), func() (peer.ID, *pb.TunnelOpen, error) {
		var open pb.TunnelOpen
		if err := frame.NewReader(st, st.Scope(), MaxOpen).ReadMsg(&open); err != nil {
			return "", nil, err
		}
		return st.Conn().RemotePeer(), &open, nil
	})
}

// caller is the caller's end of a tunnel: a libp2p stream, or a peer
// link's TCP connection (link.go).
type caller interface {
	io.ReadWriteCloser
	CloseWrite() error
	SetDeadline(time.Time) error
	Reset() error
}

// serve runs one tunnel: steps 1 to 3 of the protocol, with readOpen
// doing step 1 (and saying who the caller is) for the caller's transport.
func (s *Server) serve(c caller, remote peer.ID, readOpen func() (peer.ID, *pb.TunnelOpen, error)) {
	t := s.track(c, remote) // also counts the handler in s.wg, so Close waits for it
	if t == nil {
		c.Reset()
		return
	}
	defer s.wg.Done()
	defer s.untrack(c)
	select {
	case s.slot <- struct{}{}:
		defer func() { <-s.slot }()
	default:
		s.refuse(c, catalog.Errorf(catalog.CodeServerBusy, "(the jumpoint carries %d tunnels, its limit)", s.cfg.MaxTunnels))
		return
	}
	_ = c.SetDeadline(time.Now().Add(OpenTimeout))
	remote, open, err := readOpen()
	if err != nil {
		var ce *catalog.Error
		if errors.As(err, &ce) {
			s.refuse(c, err) // a caller that can be told why (a peer link's failed proof)
			return
		}
		s.refused.Add(1)
		c.Reset()
		return
	}
	// Recorded before Authorize reads the ACL, so that CloseWhere sees
	// every tunnel an older ACL may have let through.
	if !s.opening(c, remote, open) {
		c.Reset()
		return
	}
	if err := s.cfg.Authorize(remote, open); err != nil {
		s.cfg.Log.Info("tunnel refused", "remote", remote, "target", open.GetTarget(), "error", err)
		s.refuse(c, err)
		return
	}
	tc, err := net.DialTimeout("tcp", open.GetTarget(), s.cfg.DialTimeout)
	if err != nil {
		s.refuse(c, catalog.Errorf(catalog.CodeJumpointTarget, "(the jumpoint could not reach %s: %v)", open.GetTarget(), err))
		return
	}
	if !s.dialed(c, tc) {
		tc.Close()
		c.Reset()
		return
	}
	if err := frame.NewWriter(c).WriteMsg(&pb.TunnelReply{}); err != nil {
		tc.Close()
		c.Reset()
		return
	}
	_ = c.SetDeadline(time.Time{})
	s.total.Add(1)
	s.open.Add(1)
	defer s.open.Add(^uint64(0))
	s.cfg.Log.Debug("tunnel open", "remote", remote, "target", open.GetTarget())
	s.splice(c, tc, t.done)
}

func (s *Server) refuse(c caller, err error) {
	s.refused.Add(1)
	_ = frame.NewWriter(c).WriteMsg(&pb.TunnelReply{Error: catalog.ErrorToPB(err)})
	_ = c.Close()
}

// splice copies both ways until both directions end. A direction's end is
// passed on as a half-close, so protocols that close their write side
// first (the control protocol does) still work. done closes when the
// server ends the tunnel (Close, CloseWhere), which wakes a direction
// waiting for its rate limit.
func (s *Server) splice(st caller, c net.Conn, done <-chan struct{}) {
	var wg sync.WaitGroup
	wg.Go(func() {
		n, _ := pipe(c, st, s.limiter(), done)
		s.bytes.Add(uint64(n))
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		} else {
			_ = c.Close()
		}
	})
	n, err := pipe(st, c, s.limiter(), done)
	s.bytes.Add(uint64(n))
	if err != nil && !errors.Is(err, net.ErrClosed) {
		st.Reset()
	} else {
		_ = st.CloseWrite()
	}
	wg.Wait()
	_ = c.Close()
	_ = st.Close()
}

// limiter is one direction's token bucket, nil when unlimited.
func (s *Server) limiter() *bucket {
	if s.cfg.MaxBytesPerSecond <= 0 {
		return nil
	}
	return newBucket(s.cfg.MaxBytesPerSecond)
}

// liveTunnel is what the server knows of a tunnel it is opening or
// carrying.
type liveTunnel struct {
	remote peer.ID
	open   *pb.TunnelOpen // nil until read
	conn   net.Conn       // nil until the target answered
	done   chan struct{}  // closed by end
}

func (t *liveTunnel) ended() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// end cuts the tunnel both ways; the caller holds the server's lock.
func (t *liveTunnel) end(st caller) {
	if !t.ended() {
		close(t.done)
	}
	st.Reset()
	if t.conn != nil {
		t.conn.Close()
	}
}

// track registers a new tunnel and counts its handler in s.wg; nil when
// the server is closed.
func (s *Server) track(st caller, remote peer.ID) *liveTunnel {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	t := &liveTunnel{remote: remote, done: make(chan struct{})}
	s.live[st] = t
	s.wg.Add(1)
	return t
}

// opening records the tunnel's open message; false when the tunnel was
// ended meanwhile.
func (s *Server) opening(st caller, remote peer.ID, open *pb.TunnelOpen) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.live[st]
	if s.closed || t == nil || t.ended() {
		return false
	}
	t.remote, t.open = remote, open
	return true
}

// dialed records the target connection, so that Close and CloseWhere can
// end it; false when the tunnel was ended meanwhile (the caller then
// closes c).
func (s *Server) dialed(st caller, c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.live[st]
	if s.closed || t == nil || t.ended() {
		return false
	}
	t.conn = c
	return true
}

func (s *Server) untrack(st caller) {
	s.mu.Lock()
	delete(s.live, st)
	s.mu.Unlock()
}

// String is for logs.
func (c *Conn) String() string { return fmt.Sprintf("tunnel to %s", c.remote) }
