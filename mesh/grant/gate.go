package grant

import (
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Limits bound what one grant may do at a peer. The zero value of a field
// means its default (DefaultLimits).
type Limits struct {
	// OpenFor is how long after its first use a grant may open new
	// channels on the connections it is bound to. Channels already open
	// are not cut by it (a revocation does that); a console that needs more
	// channels afterwards asks the coordinator for a fresh grant, which
	// checks the technician, the peer's policies and its jump window again.
	// It bounds how long a revocation that never reached the peer (the
	// peer was cut off from the coordinator) leaves a grant usable.
	OpenFor time.Duration
	// RevocationMemory is how long the gate remembers a revocation (on the
	// peer's clock) to refuse grants issued before it that it has not seen
	// yet. Such a grant expires MaxLifetime after it was issued, so this
	// covers that plus a generous difference between the coordinator's and
	// the peer's clocks.
	RevocationMemory time.Duration
}

// Defaults of Limits.
const (
	// DefaultOpenFor: five minutes keeps a busy forward's grant requests
	// rare (one per five minutes per forward) while a missed revocation
	// expires within minutes.
	DefaultOpenFor          = 5 * time.Minute
	DefaultRevocationMemory = 10 * time.Minute
)

// DefaultLimits are the limits a peer applies unless told otherwise.
func DefaultLimits() Limits {
	return Limits{OpenFor: DefaultOpenFor, RevocationMemory: DefaultRevocationMemory}
}

func (l Limits) withDefaults() Limits {
	if l.OpenFor <= 0 {
		l.OpenFor = DefaultOpenFor
	}
	if l.RevocationMemory <= 0 {
		l.RevocationMemory = DefaultRevocationMemory
	}
	return l
}

// Conn is what a grant is bound to on first use: the authenticated
// connection it arrived on (a libp2p network.Conn).
type Conn interface {
	IsClosed() bool
	RemotePeer() peer.ID
}

// Revocation withdraws grants the coordinator issued up to a moment.
type Revocation struct {
	Technicians []peer.ID // whose grants; ignored when All
	All         bool      // every technician's grants
	// IssuedThrough is on the coordinator's clock (unix seconds): grants
	// with IssuedUnix at or before it are withdrawn. The coordinator issues
	// every later grant after it, so the peer's clock plays no part.
	IssuedThrough int64
}

// Covers reports whether r withdraws a grant issued at issued for technician.
func (r Revocation) Covers(technician peer.ID, issued int64) bool {
	return issued <= r.IssuedThrough && (r.All || slices.Contains(r.Technicians, technician))
}

// Gate admits a peer's channels: it verifies each channel's grant, accepts
// a grant once (its first use binds it to the connection it arrived on),
// bounds how long a grant opens channels, and applies revocations. Safe for
// concurrent use.
//
// Later channels of the same session may present the grant again — even
// after it expired, so a forward keeps opening connections — on that
// connection, or on another connection of the same remote peer (the
// technician) while a connection the grant is bound to is still open: a
// session that started relayed opens its later channels on the direct
// connection a hole punch added, and keeps working when the relayed one
// then ends. Anywhere else it is a replay. All of it for at most
// Limits.OpenFor after the first use.
type Gate struct {
	limits  Limits
	clock   mesh.Clock // ConsoleIP's; Admit takes its time from Check.Now
	mu      sync.Mutex
	seen    map[string]*binding
	revoked map[peer.ID]revoked // by technician; "" is every technician
}

// binding is a grant the gate has admitted.
type binding struct {
	technician peer.ID
	issued     int64     // coordinator's clock
	expires    time.Time // the grant's own expiry
	first      time.Time // first use, on the peer's clock
	conns      []Conn    // the connections the grant is bound to, first first
	revoked    bool
	consoleIP  netip.Addr // the grant's console_ip; invalid when absent or garbage
}

// revoked is the latest revocation for one technician (or all).
type revoked struct {
	through int64     // coordinator's clock
	at      time.Time // received, on the peer's clock
}

// live reports whether one of the binding's connections is still open.
func (b *binding) live() bool {
	return slices.ContainsFunc(b.conns, func(c Conn) bool { return !c.IsClosed() })
}

// GateOption configures NewGate.
type GateOption func(*Gate)

// WithClock is the clock ConsoleIP reads (the peer's); without it, the
// system clock.
func WithClock(c mesh.Clock) GateOption { return func(g *Gate) { g.clock = c } }

// NewGate returns a gate with limits l (zero fields: defaults).
func NewGate(l Limits, opts ...GateOption) *Gate {
	g := &Gate{limits: l.withDefaults(), clock: mesh.SystemClock{}, seen: map[string]*binding{}, revoked: map[peer.ID]revoked{}}
	for _, o := range opts {
		o(g)
	}
	return g
}

// Limits are the gate's limits, defaults filled in.
func (g *Gate) Limits() Limits { return g.limits }

// Admit decides whether gr may open a channel on conn at c.Now. It verifies
// gr against c (the technician is conn's remote peer, whatever c says) and
// returns its body — also with a refusal, once the signature held, for the
// audit. Refusals: grant_invalid (bad, expired before first use, replayed),
// grant_expired (past Limits.OpenFor), grant_revoked (withdrawn), or
// permission_denied (c.Capability not granted).
func (g *Gate) Admit(gr *pb.JumpGrant, c Check, conn Conn) (*pb.JumpGrantBody, error) {
	c.Technician = conn.RemotePeer()
	body, err := verify(gr, c, false)
	if err != nil {
		return body, err
	}
	now := c.Now
	key := string(body.GetNonce())
	if key == "" {
		return body, catalog.Errorf(catalog.CodeGrantInvalid, "(no nonce)")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.prune(now)
	if g.revokedLocked(c.Technician, body.GetIssuedUnix()) {
		return body, catalog.Errorf(catalog.CodeGrantRevoked, "(issued before a revocation)")
	}
	if b, ok := g.seen[key]; ok {
		switch {
		case conn.IsClosed() || !b.live() || b.conns[0].RemotePeer() != conn.RemotePeer():
			return body, catalog.Errorf(catalog.CodeGrantInvalid, "(already used: replayed grant)")
		case b.revoked:
			return body, catalog.Errorf(catalog.CodeGrantRevoked, "(issued before a revocation)")
		case !now.Before(b.first.Add(g.limits.OpenFor)):
			return body, catalog.Errorf(catalog.CodeGrantExpired, "(opened channels since %s; the bound is %s)", b.first.UTC().Format(time.RFC3339), g.limits.OpenFor)
		case !slices.Contains(b.conns, conn):
			b.conns = append(slices.DeleteFunc(b.conns, Conn.IsClosed), conn)
		}
		return body, nil
	}
	expires := time.Unix(body.GetExpiresUnix(), 0)
	if !now.Before(expires) {
		return body, catalog.Errorf(catalog.CodeGrantInvalid, "(expired at %s)", expires.UTC().Format(time.RFC3339))
	}
	g.seen[key] = &binding{technician: c.Technician, issued: body.GetIssuedUnix(), expires: expires, first: now, conns: []Conn{conn},
		consoleIP: parseConsoleIP(body.GetConsoleIp())}
	return body, nil
}

// ConsoleIP is the console_ip of the most recently first used grant this
// gate admitted for technician that can still open channels: first used
// less than Limits.OpenFor ago, not revoked, and bound to a connection that
// is still open. ok is false when there is none, or when that grant named
// no console IP (or one that does not parse). It is the one address a peer
// may aim port-mapping probes at (mesh/probe): the coordinator saw the
// technician there and signed it, so the console could not choose it.
func (g *Gate) ConsoleIP(technician peer.ID) (netip.Addr, bool) {
	now := g.clock.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	var best *binding
	for _, b := range g.seen {
		switch {
		case b.technician != technician || b.revoked || g.revokedLocked(technician, b.issued):
		case !now.Before(b.first.Add(g.limits.OpenFor)) || !b.live():
		case best == nil || b.first.After(best.first) || (b.first.Equal(best.first) && b.issued > best.issued):
			best = b
		}
	}
	if best == nil || !best.consoleIP.IsValid() {
		return netip.Addr{}, false
	}
	return best.consoleIP, true
}

// CheckConsoleIP verifies a grant a console shows without opening a
// channel with it (in a probe answer, mesh/probe) and returns its
// console_ip. The grant must pass Verify against c (the site's, for c.Peer,
// made out to c.Technician — the caller passes the authenticated remote),
// not be withdrawn by a revocation, and either be unexpired or be one this
// gate admitted for that technician less than Limits.OpenFor ago. It is not
// used up: the console may still open its session with it. Refusals:
// grant_invalid (also for a grant without a usable console_ip),
// grant_expired, grant_revoked.
func (g *Gate) CheckConsoleIP(gr *pb.JumpGrant, c Check) (netip.Addr, error) {
	c.Capability = 0
	body, err := verify(gr, c, false)
	if err != nil {
		return netip.Addr{}, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.revokedLocked(c.Technician, body.GetIssuedUnix()) {
		return netip.Addr{}, catalog.Errorf(catalog.CodeGrantRevoked, "(issued before a revocation)")
	}
	if b, ok := g.seen[string(body.GetNonce())]; ok && len(body.GetNonce()) > 0 {
		switch {
		case b.technician != c.Technician:
			return netip.Addr{}, catalog.Errorf(catalog.CodeGrantInvalid, "(already used by another technician)")
		case b.revoked:
			return netip.Addr{}, catalog.Errorf(catalog.CodeGrantRevoked, "(issued before a revocation)")
		case !c.Now.Before(b.first.Add(g.limits.OpenFor)):
			return netip.Addr{}, catalog.Errorf(catalog.CodeGrantExpired, "(opened channels since %s; the bound is %s)", b.first.UTC().Format(time.RFC3339), g.limits.OpenFor)
		}
	} else if expires := time.Unix(body.GetExpiresUnix(), 0); !c.Now.Before(expires) {
		return netip.Addr{}, catalog.Errorf(catalog.CodeGrantInvalid, "(expired at %s)", expires.UTC().Format(time.RFC3339))
	}
	ip := parseConsoleIP(body.GetConsoleIp())
	if !ip.IsValid() {
		return netip.Addr{}, catalog.Errorf(catalog.CodeGrantInvalid, "(no console IP: %q)", body.GetConsoleIp())
	}
	return ip, nil
}

// parseConsoleIP reads a grant's console_ip: a bare IP, IPv4 in IPv6
// unmapped, no zone; anything else is the invalid Addr.
func parseConsoleIP(s string) netip.Addr {
	ip, err := netip.ParseAddr(s)
	if err != nil || ip.Zone() != "" || ip.IsUnspecified() {
		return netip.Addr{}
	}
	return ip.Unmap()
}

// Revoked reports, as grant_revoked, whether a revocation withdrew body's
// grant. A caller that registers a channel after Admit checks again here, so
// a revocation between the two is not missed.
func (g *Gate) Revoked(body *pb.JumpGrantBody) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	b := g.seen[string(body.GetNonce())]
	if (b != nil && b.revoked) || g.revokedLocked(peer.ID(body.GetTechnician()), body.GetIssuedUnix()) {
		return catalog.Errorf(catalog.CodeGrantRevoked, "(issued before a revocation)")
	}
	return nil
}

// Revoke applies r, received at now (the peer's clock): the grants it
// covers open no more channels. Closing the channels they opened is the
// caller's (Revocation.Covers says which).
func (g *Gate) Revoke(r Revocation, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	techs := r.Technicians
	if r.All {
		techs = []peer.ID{""}
	}
	for _, t := range techs {
		if old, ok := g.revoked[t]; !ok || old.through < r.IssuedThrough {
			g.revoked[t] = revoked{through: r.IssuedThrough, at: now}
		}
	}
	for _, b := range g.seen {
		if r.Covers(b.technician, b.issued) {
			b.revoked = true
		}
	}
}

func (g *Gate) revokedLocked(technician peer.ID, issued int64) bool {
	for _, t := range []peer.ID{technician, ""} {
		if r, ok := g.revoked[t]; ok && issued <= r.through {
			return true
		}
	}
	return false
}

// prune forgets grants that can open no more channels, and revocations
// older than the grants they could still refuse. A grant past its bound is
// kept for another bound, so a console still presenting it hears
// grant_expired rather than "expired" (both make it ask for a fresh one).
func (g *Gate) prune(now time.Time) {
	for n, b := range g.seen {
		if !now.Before(b.expires) && (!b.live() || !now.Before(b.first.Add(2*g.limits.OpenFor))) {
			delete(g.seen, n)
		}
	}
	for t, r := range g.revoked {
		if !now.Before(r.at.Add(g.limits.RevocationMemory)) {
			delete(g.revoked, t)
		}
	}
}
