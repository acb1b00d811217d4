package probe

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-msgio/pbio"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/frame"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Log field names.
const (
	logRemote = "remote"
	logHard   = "hard"
	logPort   = "port"
	logIndex  = "index"
	logErr    = "err"
	logAs     = "as"
	logOpen   = "openers"
	logProbes = "probes"
	logHit    = "hit"
	logDirect = "direct"
	logTook   = "took"
)

// Local is what one side knows and may do.
type Local struct {
	Host host.Host
	// Side is what it tells of itself.
	Side *pb.ProbeSide
	// UDP lends the host's shared QUIC socket of a network ("udp4",
	// "udp6"): mesh.SharedUDP. Used when this side probes.
	UDP func(network string) (net.PacketConn, error)
	// Allowed reports whether ip is the other side's public IP as a
	// trusted party saw it; nothing is sent to any other IP.
	Allowed func(netip.Addr) bool
	// Grant (console) is the console's jump grant for this peer; Respond
	// sends it in its answer (ProbeAnswer.grant).
	Grant *pb.JumpGrant
	// CheckGrant (peer), when set, verifies the grant of the console's
	// answer (grant.Gate.CheckConsoleIP for the remote) and returns the
	// console IP the coordinator signed in it. Initiate then probes only
	// when it passes, and only towards that IP (which Allowed, when set,
	// must accept too); otherwise it starts with NONE.
	CheckGrant func(remote peer.ID, g *pb.JumpGrant) (netip.Addr, error)
	// Log receives the exchange's steps; nil discards them.
	Log *slog.Logger
}

// Result is how an exchange went.
type Result struct {
	Hard        pb.ProbeStart_Hard
	OpenersSent int // by the hard side (0 on the easy side: it is not told)
	ProbesSent  int // by the easy side (as it reported, on the hard side)
	Hit         bool
	Direct      bool // a direct (non-circuit) connection to the remote exists at the end
	Took        time.Duration
}

// Initiate runs the exchange as the peer, on a stream it opened to the
// console (over the relayed connection): it chooses the key, offers,
// decides the roles from both sides (Roles), starts, then does its
// role's work. It closes s. A Result with Hard NONE and no error means
// probing did not fit this pair.
func Initiate(ctx context.Context, s network.Stream, l Local) (res Result, err error) {
	start := time.Now()
	x := newSession(ctx, s, l)
	defer x.close()
	defer func() { x.logEnd("peer", res, err) }()
	key := make([]byte, KeySize)
	_, _ = rand.Read(key)
	x.key = key
	if err := x.w.WriteMsg(&pb.ProbeOffer{Side: l.Side, Key: key}); err != nil {
		return x.result(start), fmt.Errorf("sending the probe offer: %w", err)
	}
	var ans pb.ProbeAnswer
	if err := x.r.ReadMsg(&ans); err != nil {
		return x.result(start), fmt.Errorf("reading the probe answer: %w", err)
	}
	if ans.GetRefused() != "" {
		return x.result(start), fmt.Errorf("%w: %s", ErrRefused, ans.GetRefused())
	}
	x.res.Hard = Roles(l.Side, ans.GetSide())
	var grantErr error
	if l.CheckGrant != nil {
		ip, err := l.CheckGrant(x.remote, ans.GetGrant())
		if err != nil {
			x.res.Hard, grantErr = pb.ProbeStart_NONE, fmt.Errorf("%w: %w", ErrGrant, err)
		} else {
			allowed := l.Allowed
			x.l.Allowed = func(a netip.Addr) bool { return a == ip.Unmap() && (allowed == nil || allowed(a)) }
		}
	}
	if err := x.w.WriteMsg(&pb.ProbeStart{Hard: x.res.Hard, Sockets: MaxSockets, Probes: MaxProbes}); err != nil {
		return x.result(start), fmt.Errorf("sending the probe start: %w", err)
	}
	if grantErr != nil {
		return x.result(start), grantErr
	}
	x.log.Debug("probe start", logRemote, x.remote, logHard, x.res.Hard)
	switch x.res.Hard {
	case pb.ProbeStart_PEER:
		err := x.hard(ans.GetSide(), MaxSockets)
		return x.result(start), err
	case pb.ProbeStart_CONSOLE:
		err := x.easy(ans.GetSide(), MaxProbes, MaxSockets)
		return x.result(start), err
	}
	return x.result(start), nil
}

// Respond runs the exchange as the console, on a stream the peer opened.
// It refuses unless the stream's connection was opened by this host: a
// console probes only towards a peer it chose to reach. It clamps the
// peer's numbers to MaxSockets and MaxProbes. It closes s.
func Respond(ctx context.Context, s network.Stream, l Local) (res Result, err error) {
	start := time.Now()
	x := newSession(ctx, s, l)
	defer x.close()
	defer func() { x.logEnd("console", res, err) }()
	var offer pb.ProbeOffer
	if err := x.r.ReadMsg(&offer); err != nil {
		return x.result(start), fmt.Errorf("reading the probe offer: %w", err)
	}
	refuse := ""
	switch {
	case s.Conn().Stat().Direction != network.DirOutbound:
		refuse = refuseInbound
	case len(offer.GetKey()) != KeySize:
		refuse = refuseBadOffer
	}
	if refuse != "" {
		_ = x.w.WriteMsg(&pb.ProbeAnswer{Refused: refuse})
		return x.result(start), fmt.Errorf("refused the probe offer of %s: %s", x.remote, refuse)
	}
	x.key = offer.GetKey()
	if err := x.w.WriteMsg(&pb.ProbeAnswer{Side: l.Side, Grant: l.Grant}); err != nil {
		return x.result(start), fmt.Errorf("sending the probe answer: %w", err)
	}
	var st pb.ProbeStart
	if err := x.r.ReadMsg(&st); err != nil {
		return x.result(start), fmt.Errorf("reading the probe start: %w", err)
	}
	x.res.Hard = st.GetHard()
	x.log.Debug("probe start", logRemote, x.remote, logHard, x.res.Hard, "sockets", st.GetSockets(), "probes", st.GetProbes())
	switch x.res.Hard {
	case pb.ProbeStart_NONE:
		return x.result(start), nil
	case pb.ProbeStart_CONSOLE:
		err := x.hard(offer.GetSide(), clamp(st.GetSockets(), MaxSockets))
		return x.result(start), err
	case pb.ProbeStart_PEER:
		err := x.easy(offer.GetSide(), clamp(st.GetProbes(), MaxProbes), clamp(st.GetSockets(), MaxSockets))
		return x.result(start), err
	}
	x.fail(fmt.Sprintf("unknown role %d", x.res.Hard))
	return x.result(start), fmt.Errorf("%w: unknown role %d", ErrProtocol, x.res.Hard)
}

// clamp bounds a number the remote chose: 0 (unset) and anything above
// max mean max.
func clamp(v uint32, max int) int {
	if v == 0 || v > uint32(max) {
		return max
	}
	return int(v)
}

// session is one side of one exchange.
type session struct {
	ctx    context.Context
	cancel context.CancelFunc
	s      network.Stream
	l      Local
	log    *slog.Logger
	remote peer.ID
	key    []byte
	r      pbio.ReadCloser
	w      *frame.Writer
	wmu    sync.Mutex // w, once the event reader runs
	res    Result

	events  chan *pb.ProbeEvent // from readEvents; closed when the stream's read side ends
	readers sync.WaitGroup
}

func newSession(ctx context.Context, s network.Stream, l Local) *session {
	x := &session{s: s, l: l, log: l.Log, remote: s.Conn().RemotePeer()}
	if x.log == nil {
		x.log = slog.New(slog.DiscardHandler)
	}
	x.ctx, x.cancel = context.WithTimeout(ctx, Timeout)
	_ = s.SetDeadline(time.Now().Add(Timeout))
	x.r, x.w = pbio.NewDelimitedReader(s, maxMsg), frame.NewWriter(s)
	return x
}

func (x *session) result(start time.Time) Result {
	x.res.Took = time.Since(start)
	return x.res
}

// logEnd logs how the exchange went: at Info once it started probing or
// when it failed (a peer makes at most two exchanges per console).
func (x *session) logEnd(as string, res Result, err error) {
	level := slog.LevelDebug
	if res.Hard != pb.ProbeStart_NONE || err != nil {
		level = slog.LevelInfo
	}
	x.log.Log(context.Background(), level, "probe exchange", logAs, as, logRemote, x.remote, logHard, res.Hard,
		logOpen, res.OpenersSent, logProbes, res.ProbesSent, logHit, res.Hit, logDirect, res.Direct, logTook, res.Took, logErr, err)
}

// close ends the exchange: the stream, then the event reader.
func (x *session) close() {
	x.cancel()
	_ = x.s.SetReadDeadline(time.Now())
	_ = x.s.Close()
	x.readers.Wait()
}

// startEvents starts reading the ProbeEvents of the remote; they come on
// x.events until the stream ends.
func (x *session) startEvents() {
	x.events = make(chan *pb.ProbeEvent, 4)
	x.readers.Go(func() {
		defer close(x.events)
		for {
			e := new(pb.ProbeEvent)
			if err := x.r.ReadMsg(e); err != nil {
				return
			}
			select {
			case x.events <- e:
			case <-x.ctx.Done():
				return
			}
		}
	})
}

// tellHit tells the other side about a hit this side saw.
func (x *session) tellHit(h hit) {
	x.log.Debug("probe hit", logRemote, x.remote, logPort, h.port, logIndex, h.index)
	_ = x.send(&pb.ProbeEvent{Event: &pb.ProbeEvent_Hit{Hit: &pb.ProbeHit{Port: uint32(h.port), Index: uint32(h.index)}}})
}

func (x *session) send(e *pb.ProbeEvent) error {
	x.wmu.Lock()
	defer x.wmu.Unlock()
	return x.w.WriteMsg(e)
}

// fail tells the remote why this side gives up.
func (x *session) fail(why string) {
	_ = x.send(&pb.ProbeEvent{Event: &pb.ProbeEvent_Failed{Failed: why}})
}

// direct reports whether a direct (non-circuit) connection to the remote
// exists.
func direct(h host.Host, remote peer.ID) bool {
	for _, c := range h.Network().ConnsToPeer(remote) {
		if !mesh.IsCircuit(c.RemoteMultiaddr()) && !c.Stat().Limited {
			return true
		}
	}
	return false
}

// validIP reports whether ip may be a remote's public address at all.
func validIP(ip netip.Addr) bool {
	return ip.IsValid() && !ip.IsUnspecified() && !ip.IsMulticast() && !ip.IsLinkLocalUnicast() && !ip.IsLinkLocalMulticast() && !ip.IsInterfaceLocalMulticast()
}

// udpNetwork is the socket network of ip's family.
func udpNetwork(ip netip.Addr) string {
	if ip.Is4() {
		return "udp4"
	}
	return "udp6"
}
