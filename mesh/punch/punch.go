package punch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	holepunchpb "github.com/libp2p/go-libp2p/p2p/protocol/holepunch/pb"
	"github.com/libp2p/go-msgio/pbio"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	msmux "github.com/multiformats/go-multistream"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/frame"
	"github.com/jumpmesh/jumpmesh/mesh/natmap"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Punch timing.
const (
	punchFirstRetry = 250 * time.Millisecond
	punchMaxRetry   = 4 * time.Second
	punchAttempts   = 6                // 0.25+0.5+1+2+4 s of waiting in all
	punchStream     = 10 * time.Second // one exchange
	punchDial       = 10 * time.Second // one simultaneous dial, at most
	punchDialBase   = 1500 * time.Millisecond
	punchReverse    = 3 * time.Second // one ordinary dial to a public remote
	punchMaxMsg     = 4 << 10

	// The remote's hole-punch service answers only once it knows a
	// public address of its own: libp2p's holepunch.Service looks for one
	// at 0.25, 0.75, 1.75, 3.75 s… after its host starts, and sets its
	// stream handler then. A console that reached the peer a moment after
	// it started (an early dial, a ping) may not speak DCUtR yet: the
	// stream is asked for again every punchReadyPoll, for punchReadyWait
	// at most, before the attempt counts as failed.
	punchReadyPoll = 100 * time.Millisecond
	punchReadyWait = 4 * time.Second
)

// Puncher opens direct connections for the relayed connections a host
// accepts. Start it with StartPuncher; Close stops it.
type Puncher struct {
	h      host.Host
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu          sync.Mutex
	active      map[peer.ID]bool
	again       map[peer.ID]bool                                 // a new relayed connection came during a punch
	observed    map[string]ma.Multiaddr                          // by transport ("tcp"): the latest trusted observation
	flows       []natmap.Observation                             // TCP flows from the listening port, as trusted observers saw them
	learning    bool                                             // a fresh observation to classify the NAT is under way
	learnt      int                                              // fresh observations made to classify it
	udpFlows    []natmap.Observation                             // QUIC flows from the listening port, as trusted observers saw them (NAT)
	seenBy      map[peer.ID]bool                                 // trusted peers that observed a flow (NAT)
	updated     time.Time                                        // the last observation (NAT)
	udpBlocked  bool                                             // a QUIC dial to a trusted observer failed and no QUIC flow was seen (NAT)
	udpLearning bool                                             // a fresh QUIC observation is under way (observeudp.go)
	udpLearnt   int                                              // fresh QUIC observations made
	onNAT       func()                                           // called when an observation came (WithNATChange)
	predict     func() bool                                      // whether the site lets us predict ports (WithPrediction)
	predictMu   sync.Mutex                                       // held through a predicted punch (attempt)
	probing     func() bool                                      // whether the site lets us probe (WithProbing)
	granted     func(peer.ID) (netip.Addr, bool)                 // a remote's public IP from the grant it showed (WithGranted)
	grantCheck  func(peer.ID, *pb.JumpGrant) (netip.Addr, error) // checks the grant of a probe answer (WithGrantCheck)
	probeMu     sync.Mutex                                       // held through a probe exchange
	probes      map[peer.ID]int                                  // probe exchanges per remote while its punching lasts
	n           *network.NotifyBundle
	trusted     func(peer.ID) bool
	tracer      Tracer
}

// Tracer observes a Puncher. Its methods are called from the punching
// goroutines and must not block.
type Tracer interface {
	// Attempt reports one try for a direct connection to remote: how
	// ("hole punch" or "direct dial"), its number (from 1), the relayed
	// round trip the exchange measured (0 for a direct dial), how long it
	// took, and its error (nil when a direct connection exists after it).
	Attempt(remote peer.ID, how string, n int, rtt, took time.Duration, err error)
	// Done reports that punching for remote succeeded (direct true) or
	// gave up after its last try; it is not called when the relayed
	// connection ends or the puncher closes first.
	Done(remote peer.ID, direct bool, tries int)
}

// Option configures a Puncher.
type Option func(*Puncher)

// WithTracer makes t observe the puncher.
func WithTracer(t Tracer) Option { return func(p *Puncher) { p.tracer = t } }

// WithNATChange makes the puncher call f whenever an observation of the
// host's NAT comes (NAT may then say more). f is called from the
// puncher's goroutines and must not block.
func WithNATChange(f func()) Option { return func(p *Puncher) { p.onNAT = f } }

type noTracer struct{}

func (noTracer) Attempt(peer.ID, string, int, time.Duration, time.Duration, error) {}
func (noTracer) Done(peer.ID, bool, int)                                           {}

// Start starts punching holes for the relayed connections h
// accepts. The host must not run libp2p's own hole-punching initiator
// (HostConfig.Puncher leaves it out).
//
// The addresses it offers are the host's public ones plus the NAT mapping
// of its listening port as the trusted observers (the coordinator, the
// relays) last reported it through identify. One trusted observer is
// enough: libp2p's address manager wants several in different /16
// networks before it advertises an observed address, and a site's
// coordinator and relays often share one.
func Start(h host.Host, trusted func(peer.ID) bool, log *slog.Logger, opts ...Option) (*Puncher, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sub, err := h.EventBus().Subscribe(new(event.EvtPeerIdentificationCompleted))
	if err != nil {
		return nil, fmt.Errorf("hole punching: %w", err)
	}
	p := &Puncher{h: h, log: log, active: map[peer.ID]bool{}, again: map[peer.ID]bool{}, observed: map[string]ma.Multiaddr{}, trusted: trusted, tracer: noTracer{}}
	for _, o := range opts {
		o(p)
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.wg.Go(func() {
		defer sub.Close()
		for {
			select {
			case <-p.ctx.Done():
				return
			case e := <-sub.Out():
				if id, ok := e.(event.EvtPeerIdentificationCompleted); ok {
					p.observe(id)
					p.maybeLearn(id.Peer)
					p.maybeLearnUDP(id.Peer)
				}
			}
		}
	})
	p.n = &network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) {
		if c.Stat().Direction == network.DirInbound && mesh.IsCircuit(c.RemoteMultiaddr()) {
			p.start(c.RemotePeer())
		}
	}}
	h.Network().Notify(p.n)
	return p, nil
}

// observe keeps what a trusted observer saw of a direct connection that
// left from a listening port (TCP reuses it for dialing; QUIC always does):
// that is the NAT's mapping of the port the remote must punch towards.
func (p *Puncher) observe(e event.EvtPeerIdentificationCompleted) {
	obs := e.ObservedAddr
	if obs == nil || e.Conn == nil || mesh.IsCircuit(e.Conn.RemoteMultiaddr()) || !manet.IsPublicAddr(obs) || !p.trusted(e.Peer) {
		return
	}
	proto, localPort := transportPort(e.Conn.LocalMultiaddr())
	if proto == "" || !slices.ContainsFunc(p.h.Network().ListenAddresses(), func(a ma.Multiaddr) bool {
		q, port := transportPort(a)
		return q == proto && port == localPort
	}) {
		return
	}
	q, _ := transportPort(obs)
	if q != proto {
		return
	}
	// A QUIC flow is kept with the others of its transport: for the NAT
	// report, probing, and the QUIC mapping a punch offers (quicAddr).
	p.mu.Lock()
	p.seen(e.Peer)
	if proto == "tcp" {
		p.observed[proto] = obs
		p.flows = noteFlowAt(p.flows, e.Conn.RemoteMultiaddr(), obs, e.Conn.Stat().Opened)
	} else {
		p.udpFlows = noteFlowAt(p.udpFlows, e.Conn.RemoteMultiaddr(), obs, e.Conn.Stat().Opened)
	}
	p.mu.Unlock()
	p.natChanged()
}

// natChanged tells WithNATChange's function.
func (p *Puncher) natChanged() {
	if p.onNAT != nil {
		p.onNAT()
	}
}

// maxFlows bounds the observed flows kept for predicting the NAT's next
// port: the latest ones are what counts.
const maxFlows = 8

// noteFlowAt adds to flows an observed flow from the listening port for
// natmap: the observer's address (remote), the mapping it saw (obs), and
// when the connection opened (identify may complete out of the order the
// flows were opened in). It returns the flows, in time order, the latest
// maxFlows of them.
func noteFlowAt(flows []natmap.Observation, remote, obs ma.Multiaddr, at time.Time) []natmap.Observation {
	dest, err1 := addrPort(remote)
	mapped, err2 := addrPort(obs)
	if err1 != nil || err2 != nil {
		return flows
	}
	f := natmap.Observation{Dest: dest, Mapped: mapped, At: at}
	if f.At.IsZero() {
		f.At = time.Now()
	}
	if slices.ContainsFunc(flows, func(o natmap.Observation) bool { return o.Dest == f.Dest && o.Mapped == f.Mapped }) {
		return flows
	}
	flows = append(flows, f)
	slices.SortStableFunc(flows, func(a, b natmap.Observation) int { return a.At.Compare(b.At) })
	if len(flows) > maxFlows {
		flows = slices.Delete(flows, 0, len(flows)-maxFlows)
	}
	return flows
}

// addrPort is the IP address and TCP or UDP port of a /ip4|ip6/…/tcp|udp/N… address.
func addrPort(a ma.Multiaddr) (netip.AddrPort, error) {
	ipText, err := a.ValueForProtocol(ma.P_IP4)
	if err != nil {
		if ipText, err = a.ValueForProtocol(ma.P_IP6); err != nil {
			return netip.AddrPort{}, fmt.Errorf("%v has no IP address", a)
		}
	}
	_, portText := transportPort(a)
	ip, err1 := netip.ParseAddr(ipText)
	port, err2 := strconv.ParseUint(portText, 10, 16)
	if err1 != nil || err2 != nil {
		return netip.AddrPort{}, fmt.Errorf("%v has no TCP or UDP port", a)
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(port)), nil
}

// transportPort is "tcp" or "udp" and the port of a /ip4|ip6/.../tcp|udp/N address.
func transportPort(a ma.Multiaddr) (string, string) {
	if v, err := a.ValueForProtocol(ma.P_TCP); err == nil {
		return "tcp", v
	}
	if v, err := a.ValueForProtocol(ma.P_UDP); err == nil {
		return "udp", v
	}
	return "", ""
}

// Close stops every punch in progress and waits for them.
func (p *Puncher) Close() {
	p.h.Network().StopNotify(p.n)
	p.cancel()
	p.wg.Wait()
}

// start punches for remote's new relayed connection. A punch already
// running for remote goes on; if it ends because its relayed connection
// did, it starts over for the new one.
func (p *Puncher) start(remote peer.ID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctx.Err() != nil {
		return
	}
	if p.active[remote] {
		p.again[remote] = true
		return
	}
	p.active[remote] = true
	p.wg.Go(func() {
		wait, tries := punchFirstRetry, 0
		for {
			p.dropStaleDirect(remote)
			tries = p.punch(remote, &wait, tries)
			p.mu.Lock()
			if !p.again[remote] || p.ctx.Err() != nil {
				delete(p.active, remote)
				delete(p.again, remote)
				delete(p.probes, remote)
				p.mu.Unlock()
				return
			}
			delete(p.again, remote)
			p.mu.Unlock()
		}
	})
}

// punch tries, with backoff, until there is a direct connection to remote,
// no relayed one any more, or no attempts left (counting those of earlier
// relayed connections, tries). It returns the attempts made so far.
func (p *Puncher) punch(remote peer.ID, wait *time.Duration, tries int) int {
	for {
		if p.direct(remote) || tries >= punchAttempts {
			return tries
		}
		if !p.relayed(remote) {
			p.log.Debug("hole punching: the relayed connection ended", "peer", remote, "attempt", tries)
			return tries
		}
		tries++
		t0 := time.Now()
		how, rtt, err := p.attempt(remote, tries)
		direct := err == nil && p.direct(remote)
		if err == nil && !direct {
			err = errors.New("no direct connection after the attempt")
		}
		p.tracer.Attempt(remote, how, tries, rtt, time.Since(t0), err)
		if direct {
			p.log.Info("direct connection", "peer", remote, "by", how, "attempt", tries, "relayed_rtt", rtt.Round(time.Millisecond), "took", time.Since(t0).Round(time.Millisecond))
			p.tracer.Done(remote, true, tries)
			return punchAttempts
		}
		if tries == punchAttempts {
			p.log.Info("hole punching gave up; the session stays relayed", "peer", remote, "attempts", tries, "error", err)
			p.tracer.Done(remote, false, tries)
			return tries
		}
		p.log.Debug("hole punch failed; retrying", "peer", remote, "by", how, "attempt", tries, "error", err, "in", *wait)
		t := time.NewTimer(*wait)
		select {
		case <-p.ctx.Done():
			t.Stop()
			return punchAttempts
		case <-t.C:
		}
		*wait = min(2**wait, punchMaxRetry)
	}
}

func (p *Puncher) direct(remote peer.ID) bool {
	return slices.ContainsFunc(p.h.Network().ConnsToPeer(remote), func(c network.Conn) bool { return !mesh.IsCircuit(c.RemoteMultiaddr()) })
}

func (p *Puncher) relayed(remote peer.ID) bool {
	return slices.ContainsFunc(p.h.Network().ConnsToPeer(remote), func(c network.Conn) bool { return mesh.IsCircuit(c.RemoteMultiaddr()) })
}

// attempt makes the n-th try for a direct connection to remote. Every
// other try, when identify says the remote listens on public addresses (a
// console on a public network), it simply dials them: that is an ordinary
// connection, whose dialer must be the client — a punch would give both
// sides the server role. When a punch cannot open the pair's NATs, it
// probes (probing.go). Otherwise it punches.
func (p *Puncher) attempt(remote peer.ID, n int) (how string, rtt time.Duration, err error) {
	if p.shouldProbe(remote, n) {
		// mesh/probe logs the exchange.
		if res, err := p.probe(remote); res.Hard != pb.ProbeStart_NONE || err != nil {
			return "probe", 0, err
		}
		// Probing does not fit the pair (both endpoint-independent, say):
		// this attempt does what it would have done.
	}
	if pub := p.remotePublic(remote); n%2 == 0 && len(pub) > 0 {
		ctx, cancel := context.WithTimeout(p.ctx, punchReverse)
		defer cancel()
		return "direct dial", 0, p.h.Connect(network.WithForceDirectDial(ctx, "hole punch: public remote"), peer.AddrInfo{ID: remote, Addrs: pub})
	}
	if len(p.publicAddrs()) == 0 && !p.needFresh() {
		return "hole punch", 0, errNoPublicAddr
	}
	// The stream first, outside the predicted punches' lock: it may wait
	// for the remote's hole-punch service (punchReadyWait).
	s, err := p.openPunchStream(remote)
	if err != nil {
		return "hole punch", 0, err
	}
	if p.needFresh() {
		// One predicted punch at a time: every flow of ours takes the
		// NAT's next port, so another punch's observation or dial between
		// this one's observation and its dial would take the ports
		// predicted for it (in the lab's grid, two or three consoles at
		// once against one sequential peer left some relayed).
		p.predictMu.Lock()
		defer p.predictMu.Unlock()
		if err := p.observeFresh(p.ctx); err != nil {
			p.log.Debug("hole punching: no fresh observation", "error", err)
		}
	}
	rtt, err = p.exchange(remote, s)
	return "hole punch", rtt, err
}

var errNoPublicAddr = errors.New("no public address of our own yet")

// openPunchStream opens the DCUtR stream to remote over its relayed
// connection. A remote that does not speak DCUtR yet (its service has no
// public address of its own yet: punchReadyWait) is asked again until it
// does, the wait runs out, or the connection ends. Until 2026-12-03 the
// first refusal counted as a failed attempt, and the next attempts
// probed or dialed, so a udp-blocked console that a peer reached within
// its first second often stayed relayed (the lab's NAT grid).
func (p *Puncher) openPunchStream(remote peer.ID) (network.Stream, error) {
	ctx, cancel := context.WithTimeout(p.ctx, punchReadyWait)
	defer cancel()
	ctx = network.WithAllowLimitedConn(network.WithNoDial(ctx, "hole punch"), "hole punch")
	t := time.NewTicker(punchReadyPoll)
	defer t.Stop()
	var refused error // the remote's last "not supported"
	for {
		s, err := p.h.NewStream(ctx, remote, holepunch.Protocol)
		switch {
		case err == nil:
			return s, nil
		case refused != nil && ctx.Err() != nil && p.ctx.Err() == nil:
			// The wait ran out during a try.
			return nil, fmt.Errorf("opening the hole-punch stream: the remote did not speak DCUtR within %s: %w", punchReadyWait, refused)
		case !errors.Is(err, msmux.ErrNotSupported[protocol.ID]{}):
			return nil, fmt.Errorf("opening the hole-punch stream: %w", err)
		}
		refused = err
		select {
		case <-ctx.Done():
			if p.ctx.Err() != nil {
				return nil, p.ctx.Err()
			}
			return nil, fmt.Errorf("opening the hole-punch stream: the remote did not speak DCUtR within %s: %w", punchReadyWait, refused)
		case <-t.C:
		}
	}
}

// remotePublic are remote's public direct addresses that identify told.
func (p *Puncher) remotePublic(remote peer.ID) []ma.Multiaddr {
	return slices.DeleteFunc(p.h.Peerstore().Addrs(remote), func(a ma.Multiaddr) bool { return mesh.IsCircuit(a) || !manet.IsPublicAddr(a) })
}

// exchange is one DCUtR exchange as the initiator on s (openPunchStream), then the simultaneous
// dial: CONNECT with our public addresses, CONNECT back with the remote's
// (timing the round trip), SYNC, then dial after half a round trip — when
// the SYNC reaches the remote, which dials on receiving it. The initiator
// takes the server role of TCP simultaneous open and of the security
// handshake; the console's libp2p service takes the client's.
func (p *Puncher) exchange(remote peer.ID, s network.Stream) (rtt time.Duration, err error) {
	defer s.Close()
	own := p.publicAddrs()
	if len(own) == 0 {
		s.Reset()
		return 0, errNoPublicAddr
	}
	_ = s.SetDeadline(time.Now().Add(punchStream))
	w, r := frame.NewWriter(s), pbio.NewDelimitedReader(s, punchMaxMsg)
	start := time.Now()
	if err := w.WriteMsg(&holepunchpb.HolePunch{Type: holepunchpb.HolePunch_CONNECT.Enum(), ObsAddrs: addrBytes(own)}); err != nil {
		s.Reset()
		return 0, err
	}
	var msg holepunchpb.HolePunch
	if err := r.ReadMsg(&msg); err != nil {
		s.Reset()
		return 0, fmt.Errorf("reading CONNECT: %w", err)
	}
	rtt = time.Since(start)
	if msg.GetType() != holepunchpb.HolePunch_CONNECT {
		s.Reset()
		return rtt, fmt.Errorf("expected CONNECT, got %s", msg.GetType())
	}
	theirs := slices.DeleteFunc(mesh.DecodeAddrs(msg.GetObsAddrs()), mesh.IsCircuit)
	if len(theirs) == 0 {
		s.Reset()
		return rtt, errors.New("the remote sent no address to punch towards")
	}
	if endpointDependent(theirs) && (p.probeFits(remote) || p.sequential()) {
		// Two observers saw the remote's NAT give it two ports: a punch
		// towards either cannot pass. The next attempt probes, when it
		// may; through our sequential NAT nothing can (its filter wants
		// the port we aim at, and the remote's flow takes a new one), and
		// the dial would hold the predicted punches' lock for nothing
		// (another console waited up to 1.3 s for it in the grid).
		s.Reset()
		return rtt, errEndpointDependent
	}
	if err := w.WriteMsg(&holepunchpb.HolePunch{Type: holepunchpb.HolePunch_SYNC.Enum()}); err != nil {
		s.Reset()
		return rtt, err
	}
	p.openQUIC(theirs)
	t := time.NewTimer(rtt / 2)
	select {
	case <-p.ctx.Done():
		t.Stop()
		return rtt, p.ctx.Err()
	case <-t.C:
	}
	// Both SYNs (or QUIC Initials) cross within a round trip of the SYNC
	// when the punch works; a lost first packet is sent again after a
	// second (TCP's first retransmission). Waiting longer only delays the
	// next try.
	dctx, cancel := context.WithTimeout(p.ctx, min(punchDial, punchDialBase+4*rtt))
	defer cancel()
	dctx = network.WithForceDirectDial(network.WithSimultaneousConnect(dctx, false, "hole punch"), "hole punch")
	return rtt, p.h.Connect(dctx, peer.AddrInfo{ID: remote, Addrs: theirs})
}

// maxQUICOpeners bounds the remote QUIC addresses openQUIC sends to.
const maxQUICOpeners = 4

// openQUIC sends one datagram that is not QUIC (its first byte's fixed
// bit clear: quic-go drops it) from the QUIC listening socket to each
// public QUIC address the remote offered, as the SYNC leaves: it opens our
// NAT's mapping towards the remote half a round trip before the dial, so
// the remote's QUIC Initial, sent when the SYNC reaches it, finds it open.
// The QUIC transport's own opening packets leave only with the dial, at
// about the moment the Initial arrives, and an Initial the NAT dropped is
// sent again only after quic-go's first probe timeout, by when TCP has
// won. A TCP SYN cannot be sent early the same way: it would reach the
// remote's NAT before the remote's own SYN had left. One datagram per
// address and punch, at most maxQUICOpeners.
func (p *Puncher) openQUIC(theirs []ma.Multiaddr) {
	sent := 0
	for _, a := range theirs {
		if sent == maxQUICOpeners {
			return
		}
		if !isQUIC(a) || !manet.IsPublicAddr(a) {
			continue
		}
		ap, err := addrPort(a)
		if err != nil {
			continue
		}
		nw := "udp6"
		if ap.Addr().Is4() {
			nw = "udp4"
		}
		pc, err := mesh.SharedUDP(p.h, nw)
		if err != nil {
			continue
		}
		_, err = pc.WriteTo(quicOpener, net.UDPAddrFromAddrPort(ap))
		_ = pc.Close()
		if err == nil {
			sent++
		}
	}
}

// quicOpener is openQUIC's datagram: a first byte with QUIC's fixed bit
// (0x40) clear, so that no QUIC stack takes it for a packet.
var quicOpener = []byte{0, 'j', 'm', 'o', 'p', 'e', 'n'}

// publicAddrs are the host's direct public addresses: its own and those
// the network observed (NAT mappings).
func (p *Puncher) publicAddrs() []ma.Multiaddr {
	var all []ma.Multiaddr
	if a, ok := p.h.(interface{ AllAddrs() []ma.Multiaddr }); ok {
		all = a.AllAddrs()
	} else {
		all = p.h.Addrs()
	}
	out := slices.DeleteFunc(slices.Clone(all), func(a ma.Multiaddr) bool { return mesh.IsCircuit(a) || !manet.IsPublicAddr(a) })
	p.mu.Lock()
	defer p.mu.Unlock()
	if next := p.predicted(); len(next) > 0 {
		// A sequential NAT: the mapping the observers saw was for their
		// flows; the punch's own flow will get one of the next ports.
		out = append(out, next...)
	} else {
		for _, o := range p.observed {
			if !slices.ContainsFunc(out, o.Equal) {
				out = append(out, o)
			}
		}
	}
	if q := quicAddr(p.udpFlows); q != nil && !slices.ContainsFunc(out, q.Equal) {
		out = append(out, q)
	}
	return out
}

// quicAddr is the QUIC address a punch offers besides the TCP ones: the
// mapping trusted observers saw of the QUIC listening port, when what they
// saw shows it the same for every destination (one observation, or several
// that agree), else nil — a UDP-blocked host has no QUIC flow to show, and
// a NAT that maps each destination to its own port (hard; probing's case)
// or to the next one (sequential) shows the remote no port its dial could
// reach. Both sides dial every offered address at once (the swarm ranks a
// simultaneous connect's addresses with no delay), so the QUIC dial races
// the TCP one and a QUIC path that does not open delays nothing: QUIC
// (transport and TLS in one round trip) is direct about three round trips
// sooner than TCP (handshake, multistream's security negotiation, TLS).
func quicAddr(flows []natmap.Observation) ma.Multiaddr {
	if len(flows) == 0 {
		return nil
	}
	if k := natmap.Classify(flows).Kind; k != natmap.EndpointIndependent && k != natmap.Unknown {
		return nil
	}
	last := flows[len(flows)-1].Mapped
	a, err := manet.FromNetAddr(net.UDPAddrFromAddrPort(netip.AddrPortFrom(last.Addr().Unmap(), last.Port())))
	if err != nil {
		return nil
	}
	return a.Encapsulate(ma.StringCast("/quic-v1"))
}

// punchCandidates is how many predicted ports a punch offers: what the
// remote dials at once. libp2p's swarm dials at most 8 addresses of a peer
// at a time (swarm.DefaultPerPeerRateLimit) and the remote may also try
// our LAN address; a candidate past the first batch is dialled only when
// one of the batch gives up, after the punch's moment has passed. Six
// candidates, each a SYN and its retransmissions (at 1, 3 and 7 s) within
// the console's 10 s hole-punch dial, are 24 packets: within
// natmap.PacketBudget.
const punchCandidates = 6

// predicted are the addresses the NAT will likely map the punch's flow to,
// best first, when the observed flows show a sequential NAT (natmap):
// punchCandidates of them, which the remote dials together. Nil for any
// other NAT. p.mu is held.
func (p *Puncher) predicted() []ma.Multiaddr {
	if !p.predicting() {
		return nil
	}
	m := natmap.Classify(p.flows)
	if m.Kind != natmap.Sequential {
		return nil
	}
	var out []ma.Multiaddr
	for _, port := range m.Next(time.Now(), punchCandidates) {
		a, err := manet.FromNetAddr(net.TCPAddrFromAddrPort(netip.AddrPortFrom(m.Public, port)))
		if err == nil {
			out = append(out, a)
		}
	}
	p.log.Debug("hole punching: a sequential NAT", "step", m.Step, "last", m.Last, "candidates", len(out))
	return out
}

func addrBytes(as []ma.Multiaddr) [][]byte {
	out := make([][]byte, len(as))
	for i, a := range as {
		out[i] = a.Bytes()
	}
	return out
}
