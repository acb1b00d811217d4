package wake

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Passive listener defaults.
const (
	// DefaultCheckBurst and DefaultCheckRate bound signature checks: a
	// flood of well-formed commands costs at most this many Ed25519
	// verifications (20 at once, then 5 a second); the rest are dropped
	// unchecked.
	DefaultCheckBurst = 20
	DefaultCheckRate  = 5.0
	// DefaultMaxConns bounds the TCP connections read at once, and
	// DefaultMaxConnsPerIP those from one address.
	DefaultMaxConns      = 64
	DefaultMaxConnsPerIP = 8
	// frameReadTimeout is how long a TCP connection has to deliver its
	// command.
	frameReadTimeout = 5 * time.Second
	// wokenBuffer is how many accepted commands wait for the reader of
	// Woken; more are counted but not delivered (one is enough to wake).
	wokenBuffer = 8
)

// PassiveConfig configures a passive listener. Site and Self are required.
type PassiveConfig struct {
	// Port is the passive port, for TCP and UDP (0: DefaultPassivePort;
	// negative: any free port, the same for both).
	Port int
	// Addr is the address to listen on ("": all interfaces).
	Addr string
	// Site is the pinned site (the commands' signer); Self is this peer.
	Site, Self peer.ID
	// Now is the clock commands and the rate bound use (nil: time.Now).
	Now func() time.Time
	// Log receives accepted commands, and drops at debug level (nil: none).
	Log *slog.Logger
	// Burst and Rate bound signature checks (0: DefaultCheckBurst,
	// DefaultCheckRate per second).
	Burst int
	Rate  float64
	// MaxConns and MaxConnsPerIP bound TCP connections being read (0:
	// DefaultMaxConns, DefaultMaxConnsPerIP).
	MaxConns, MaxConnsPerIP int
	// ReplayEntries bounds the replay cache (0: DefaultReplayEntries).
	ReplayEntries int
}

// PassiveStats counts what a passive listener received, by outcome. Every
// datagram or TCP connection counts once.
type PassiveStats struct {
	Accepted    uint64 // a valid new command: Woken got it
	Garbage     uint64 // no Magic, not a command, or a malformed one
	Oversized   uint64 // over MaxCommand
	Forged      uint64 // the signature did not match the site
	OtherSite   uint64 // names another site
	OtherTarget uint64 // for another peer
	Expired     uint64 // past its expiry
	TooLong     uint64 // valid for longer than MaxValidity
	Replayed    uint64 // a nonce accepted before, more than a few seconds ago
	Duplicate   uint64 // a copy of a command accepted seconds ago (sent by several ways)
	RateLimited uint64 // dropped unchecked: the signature check rate was spent
	Busy        uint64 // TCP connections refused: too many at once
	Checked     uint64 // signature checks made
}

// Passive is a passive peer's listener: it accepts the site's wake command
// for this peer on the passive port (TCP and UDP) and drops everything
// else cheaply.
type Passive struct {
	site, self peer.ID
	now        func() time.Time
	log        *slog.Logger
	limiter    *rate.Limiter
	replays    *Replays
	woken      chan *pb.WakeBody
	maxConns   int
	maxPerIP   int

	tcp net.Listener
	udp *net.UDPConn

	accepted, garbage, oversized, forged, otherSite, otherTarget, expired,
	tooLong, replayed, duplicate, rateLimited, busy, checked atomic.Uint64

	wg        sync.WaitGroup
	mu        sync.Mutex
	closed    bool
	conns     map[net.Conn]struct{}
	perIP     map[string]int
	closeOnce sync.Once
}

// ListenPassive opens the passive port (TCP and UDP) and serves it until
// Close.
func ListenPassive(cfg PassiveConfig) (*Passive, error) {
	p, err := newPassive(cfg)
	if err != nil {
		return nil, err
	}
	p.tcp, p.udp, err = listenBoth(cfg.Addr, cfg.Port)
	if err != nil {
		return nil, err
	}
	p.wg.Add(2)
	go p.serveUDP()
	go p.serveTCP()
	return p, nil
}

// newPassive is a listener's decision part, without its sockets.
func newPassive(cfg PassiveConfig) (*Passive, error) {
	if cfg.Site == "" || cfg.Self == "" {
		return nil, errors.New("passive listener: site and self are required")
	}
	p := &Passive{
		site: cfg.Site, self: cfg.Self, now: cfg.Now, log: cfg.Log,
		replays:  NewReplays(cfg.ReplayEntries),
		woken:    make(chan *pb.WakeBody, wokenBuffer),
		maxConns: cfg.MaxConns, maxPerIP: cfg.MaxConnsPerIP,
		conns: map[net.Conn]struct{}{}, perIP: map[string]int{},
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.maxConns <= 0 {
		p.maxConns = DefaultMaxConns
	}
	if p.maxPerIP <= 0 {
		p.maxPerIP = DefaultMaxConnsPerIP
	}
	burst, r := cfg.Burst, cfg.Rate
	if burst <= 0 {
		burst = DefaultCheckBurst
	}
	if r <= 0 {
		r = DefaultCheckRate
	}
	p.limiter = rate.NewLimiter(rate.Limit(r), burst) // starts full
	return p, nil
}

// listenBoth opens TCP and UDP on the same port; for a free port it tries
// a few, as the UDP one may be taken.
func listenBoth(addr string, port int) (net.Listener, *net.UDPConn, error) {
	if port == 0 {
		port = DefaultPassivePort
	}
	tries := 1
	if port < 0 {
		port, tries = 0, 10
	}
	var err error
	for range tries {
		var tl net.Listener
		tl, err = net.Listen("tcp", net.JoinHostPort(addr, strconv.Itoa(port)))
		if err != nil {
			return nil, nil, fmt.Errorf("passive port (tcp): %w", err)
		}
		got := tl.Addr().(*net.TCPAddr).Port
		var uc net.PacketConn
		uc, err = net.ListenPacket("udp", net.JoinHostPort(addr, strconv.Itoa(got)))
		if err == nil {
			return tl, uc.(*net.UDPConn), nil
		}
		tl.Close()
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	return nil, nil, fmt.Errorf("passive port (udp): %w", err)
}

// Woken delivers each accepted command's body (it is never closed; when
// nobody reads, at most a few wait and the rest are only counted).
func (p *Passive) Woken() <-chan *pb.WakeBody { return p.woken }

// Addr is where the listener listens.
func (p *Passive) Addr() (tcp, udp net.Addr) { return p.tcp.Addr(), p.udp.LocalAddr() }

// Stats is a snapshot of the counters.
func (p *Passive) Stats() PassiveStats {
	return PassiveStats{
		Accepted: p.accepted.Load(), Garbage: p.garbage.Load(), Oversized: p.oversized.Load(),
		Forged: p.forged.Load(), OtherSite: p.otherSite.Load(), OtherTarget: p.otherTarget.Load(),
		Expired: p.expired.Load(), TooLong: p.tooLong.Load(), Replayed: p.replayed.Load(),
		Duplicate: p.duplicate.Load(), RateLimited: p.rateLimited.Load(), Busy: p.busy.Load(),
		Checked: p.checked.Load(),
	}
}

// LogValue lets a PassiveStats be logged as one group.
func (s PassiveStats) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Uint64("accepted", s.Accepted), slog.Uint64("garbage", s.Garbage),
		slog.Uint64("oversized", s.Oversized), slog.Uint64("forged", s.Forged),
		slog.Uint64("other_site", s.OtherSite), slog.Uint64("other_target", s.OtherTarget),
		slog.Uint64("expired", s.Expired), slog.Uint64("too_long", s.TooLong),
		slog.Uint64("replayed", s.Replayed), slog.Uint64("duplicate", s.Duplicate),
		slog.Uint64("rate_limited", s.RateLimited), slog.Uint64("busy", s.Busy),
		slog.Uint64("checked", s.Checked))
}

// Close stops listening and waits for the listener's goroutines. It is
// idempotent.
func (p *Passive) Close() error {
	var err error
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		err = errors.Join(p.tcp.Close(), p.udp.Close())
		p.wg.Wait()
	})
	return err
}

func (p *Passive) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

func (p *Passive) serveUDP() {
	defer p.wg.Done()
	buf := make([]byte, MaxCommand+1)
	backoff := time.Millisecond
	for {
		n, from, err := p.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			if p.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			// An ICMP error surfaced on the socket, or worse: never spin.
			t := time.NewTimer(backoff)
			<-t.C
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = time.Millisecond
		if n > MaxCommand {
			p.drop(errOversized, from.String())
			continue
		}
		p.consider(buf[:n], from.String())
	}
}

func (p *Passive) serveTCP() {
	defer p.wg.Done()
	backoff := 5 * time.Millisecond
	for {
		c, err := p.tcp.Accept()
		if err != nil {
			if p.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors or the like: wait a little, bounded.
			t := time.NewTimer(backoff)
			<-t.C
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		ip := ""
		if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			ip = a.IP.String()
		}
		if !p.track(c, ip) {
			p.busy.Add(1)
			c.Close()
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.untrack(c, ip)
			p.serveConn(c)
		}()
	}
}

func (p *Passive) track(c net.Conn, ip string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.conns) >= p.maxConns || p.perIP[ip] >= p.maxPerIP {
		return false
	}
	p.conns[c] = struct{}{}
	p.perIP[ip]++
	return true
}

func (p *Passive) untrack(c net.Conn, ip string) {
	c.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
	if p.perIP[ip]--; p.perIP[ip] <= 0 {
		delete(p.perIP, ip)
	}
}

// serveConn reads one framed command from a TCP connection; the caller
// closes it.
func (p *Passive) serveConn(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(frameReadTimeout))
	p.serveStream(c, c.RemoteAddr().String())
}

// serveStream reads one framed command from r and decides on it.
func (p *Passive) serveStream(r io.Reader, from string) {
	var buf [MaxCommand]byte
	n, err := readFrame(r, buf[:])
	if err != nil {
		p.drop(err, from)
		return
	}
	p.consider(buf[:n], from)
}

// Reasons readFrame refuses a frame.
var (
	errOversized = fmt.Errorf("%w: over %d bytes", ErrMalformed, MaxCommand)
	errNoMagic   = fmt.Errorf("%w: no magic", ErrMalformed)
)

// readFrame reads one TCP frame (2-byte big-endian length, then the
// command) into buf (at least MaxCommand bytes). It reads nothing past a
// length over MaxCommand, nor past the Magic when it is wrong.
func readFrame(r io.Reader, buf []byte) (int, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	n := int(binary.BigEndian.Uint16(hdr[:]))
	switch {
	case n > MaxCommand || n > len(buf):
		return 0, errOversized
	case n <= len(Magic):
		return 0, errNoMagic
	}
	if _, err := io.ReadFull(r, buf[:len(Magic)]); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if string(buf[:len(Magic)]) != Magic {
		return 0, errNoMagic
	}
	if _, err := io.ReadFull(r, buf[len(Magic):n]); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return n, nil
}

// consider decides on one received command (Magic included), cheapest
// checks first: the signature is checked last, and only with a rate token.
func (p *Passive) consider(b []byte, from string) {
	if len(b) > MaxCommand {
		p.drop(errOversized, from)
		return
	}
	if len(b) <= len(Magic) || string(b[:len(Magic)]) != Magic {
		p.drop(errNoMagic, from)
		return
	}
	cmd, err := Decode(b)
	if err != nil {
		p.drop(err, from)
		return
	}
	now := p.now()
	body, err := precheck(cmd, p.site, p.self, now)
	if err != nil {
		p.drop(err, from)
		return
	}
	if seen, dup := p.replays.Seen(body.GetNonce(), now); seen {
		if dup {
			p.duplicate.Add(1)
			return
		}
		p.drop(ErrReplay, from)
		return
	}
	if !p.limiter.AllowN(now, 1) {
		p.drop(errRateLimited, from)
		return
	}
	p.checked.Add(1)
	if _, err := Verify(cmd, p.site, p.self, now); err != nil {
		p.drop(err, from)
		return
	}
	if !p.replays.Accept(body.GetNonce(), time.UnixMilli(body.GetExpiresUnixMillis()), now) {
		// Another copy won the race since Seen, or the cache is full.
		if _, dup := p.replays.Seen(body.GetNonce(), now); dup {
			p.duplicate.Add(1)
			return
		}
		p.drop(ErrReplay, from)
		return
	}
	p.accepted.Add(1)
	p.log.Info("wake command accepted", "from", from, "nonce", fmt.Sprintf("%x", body.GetNonce()))
	select {
	case p.woken <- body:
	default:
	}
}

var errRateLimited = errors.New("signature check rate spent")

// drop counts a refused input by its reason.
func (p *Passive) drop(err error, from string) {
	switch {
	case errors.Is(err, errOversized):
		p.oversized.Add(1)
	case errors.Is(err, errRateLimited):
		p.rateLimited.Add(1)
	case errors.Is(err, ErrSignature):
		p.forged.Add(1)
	case errors.Is(err, ErrOtherSite):
		p.otherSite.Add(1)
	case errors.Is(err, ErrOtherTarget):
		p.otherTarget.Add(1)
	case errors.Is(err, ErrExpired):
		p.expired.Add(1)
	case errors.Is(err, ErrTooLong):
		p.tooLong.Add(1)
	case errors.Is(err, ErrReplay):
		p.replayed.Add(1)
	default:
		p.garbage.Add(1)
	}
	if p.log.Enabled(context.Background(), slog.LevelDebug) {
		p.log.Debug("passive port input dropped", "from", from, "reason", err)
	}
}
