package console

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/channel"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// ConnectTimeout bounds reaching a peer after the grant.
const ConnectTimeout = 15 * time.Second

// DefaultPunchWait is a jump's default PunchWait. In the lab's NAT grid a
// hole punch completes within about 6 round trips through the relay
// (≈ 250 ms at 40 ms); a second covers a relayed round trip of about
// 150 ms, and a pair whose NATs cannot be punched pays it once.
const DefaultPunchWait = time.Second

// Jump is a granted access to one peer: the coordinator's signed grant and
// where the peer is. Open one channel per shell, command, forwarded
// connection or copy; the peer accepts the grant on the connection it
// first arrives on for as long as that connection lives.
type Jump struct {
	c     *Client
	Grant *pb.JumpGrant
	Peer  *pb.PeerView
	ID    peer.ID
	Addrs []ma.Multiaddr
	// Relays are the site's relays: the peer is also reachable through them.
	Relays []ma.Multiaddr
	// Jumpoints, for a peer behind jumpoints, are the jumpoints to reach it
	// through (Addrs are then its addresses on their network): sessions
	// run on a tunnel host (tunnelhost.go) that Close closes.
	Jumpoints []*pb.JumpointRef
	// ForceRelay dials only through relays (labs and tests).
	ForceRelay bool
	// PunchWait is how long Connect waits, when the first connection is
	// relayed, for hole punching to add a direct one (zero: not at all;
	// Client.Jump sets DefaultPunchWait). Channels stay on the connection
	// they were opened on, so a session whose first channel opens on the
	// direct connection is faster and does not depend on the relay.
	PunchWait time.Duration

	// req is the grant request, asked again by Renew.
	req *pb.JumpRequest

	// How the session connected, for the path report (sent once);
	// reporting is closed when an early report (reportEarly) is done.
	mu        sync.Mutex
	path      *PathWatch
	reported  bool
	reporting chan struct{}
	tunnel    *tunnelHost
	closed    bool
	// early is the channel opened while the grant was asked for (Need.Open),
	// until Open takes it or Close gives it up.
	early *earlyOpen
}

// Need is what a session asks a grant for: a capability (grant.Shell,
// grant.Exec, grant.Forward, grant.FileTransfer) and, for exec, the
// command, which the coordinator checks against the peer's session
// policies before it grants.
type Need struct {
	Capability uint32
	Argv       []string
	// Open, when set, is the channel the session opens first: it is opened
	// while the grant is asked for (channel.OpenPending, on the connection
	// of the last jump to the same PEER, when the peer speaks
	// channel.ProtocolGrantFollows), and Jump.Open with an equal open sends
	// it the grant instead of opening a channel then (issue 17).
	Open *pb.ChannelOpen
}

// Jump asks the coordinator for a grant to use capability on the peer ref
// names (peer ID, unique name, or unique search result).
func (c *Client) Jump(ctx context.Context, ref string, capability uint32) (*Jump, error) {
	return c.JumpFor(ctx, ref, Need{Capability: capability})
}

// JumpExec asks for a grant to run argv without a PTY (exec): the
// coordinator refuses at once a command the peer's session policies do not
// list (the peer checks every command again).
func (c *Client) JumpExec(ctx context.Context, ref string, argv []string) (*Jump, error) {
	return c.JumpFor(ctx, ref, Need{Capability: grant.Exec, Argv: argv})
}

// JumpFor asks for a grant for need on the peer ref names.
func (c *Client) JumpFor(ctx context.Context, ref string, need Need) (*Jump, error) {
	return c.jump(ctx, &pb.JumpRequest{Ref: ref, Capability: need.Capability, Argv: need.Argv}, need.Open)
}

// WithJump asks for a grant for need on the peer ref names, runs fn with
// the jump, and, when fn returns, reports how the session connected. It
// is the shape of every console session: jump, use, report.
func (c *Client) WithJump(ctx context.Context, ref string, need Need, fn func(*Jump) error) error {
	j, err := c.JumpFor(ctx, ref, need)
	if err != nil {
		return err
	}
	defer j.Close()
	defer j.ReportPath(context.WithoutCancel(ctx))
	return fn(j)
}

// Renew asks the coordinator again for the grant j holds (same peer, same
// need): a fresh jump, for when the peer no longer accepts j's grant.
func (j *Jump) Renew(ctx context.Context) (*Jump, error) {
	return j.c.jump(ctx, proto.CloneOf(j.req), nil)
}

// jump asks for the grant req describes; with open, it opens that channel
// on the early dial's connection meanwhile (see Need.Open).
func (c *Client) jump(ctx context.Context, req *pb.JumpRequest, open *pb.ChannelOpen) (*Jump, error) {
	req.Protocol = string(channel.Protocol)
	early, dialed, stopEarly := c.dialEarly(ctx, req.GetRef())
	var eo *earlyOpen
	if open != nil && early != "" {
		eo = c.openEarly(ctx, early, dialed, open)
	}
	c.dialCoordinator(ctx)
	end := c.timingOf(ctx).Begin("grant request")
	r, err := c.do(ctx, &pb.Request{Body: &pb.Request_Jump{Jump: req}})
	end()
	if o := c.wakeOptions(); req.GetRef() != "" && shouldWake(err, o) {
		// A passive peer (always) or an offline one (--wake): wake it,
		// wait for it, and ask again (wake.go).
		if werr := c.wakeForJump(ctx, req.GetRef(), o); werr != nil {
			return nil, werr
		}
		r, err = c.do(ctx, &pb.Request{Body: &pb.Request_Jump{Jump: req}})
	}
	if err != nil {
		stopEarly()
		eo.cancel()
		return nil, err
	}
	jr := r.GetJump()
	j := &Jump{c: c, req: req, Grant: jr.GetGrant(), Peer: jr.GetPeer(), ID: peer.ID(jr.GetPeer().GetPeer().GetId()), PunchWait: DefaultPunchWait,
		Jumpoints: jr.GetJumpoints(), early: eo}
	if early != j.ID || len(j.Jumpoints) > 0 {
		stopEarly() // the name is another peer's now, or the peer is behind a jumpoint now
		eo.cancel()
		j.early = nil
	}
	j.Addrs, j.Relays = mesh.DecodeAddrs(jr.GetAddrs()), mesh.DecodeAddrs(jr.GetRelays())
	c.noteGrant(j.ID, j.Grant)
	c.notePeerIP(j.ID, jr.GetPeerIp())
	return j, nil
}

// Connect reaches the peer, within ConnectTimeout, and starts watching
// for a direct connection replacing a relayed one. A peer behind
// jumpoints is reached through one (the main host reaching the jumpoint,
// the tunnel host the peer).
func (j *Jump) Connect(ctx context.Context) error {
	if len(j.Jumpoints) > 0 {
		return j.connectThroughJumpoint(ctx)
	}
	j.mu.Lock()
	if j.path == nil {
		j.path = WatchPath(j.c.host, j.ID)
	}
	w := j.path
	j.mu.Unlock()
	t := j.c.timingOf(ctx)
	end := t.Begin("peer dial")
	err := j.c.Connect(ctx, j.ID, j.Addrs, j.Relays, j.ForceRelay)
	end()
	if err != nil {
		return err
	}
	// Connected records the first connection and is true only for the
	// call that recorded it: call it once (a second call here skipped the
	// punch wait, and every jump stayed relayed).
	first := w.Connected()
	if first {
		t.Rename("peer dial", "peer dial ("+w.Summary().Initial.String()+")")
		if !j.ForceRelay {
			j.c.peers.note(j.req.GetRef(), j.ID, j.Addrs)
		}
	}
	if first && w.Summary().Initial == PathRelayed && j.PunchWait > 0 && !j.ForceRelay {
		end := t.Begin("hole punch wait")
		w.WaitDirect(ctx, j.PunchWait)
		end()
	}
	if first {
		j.reportEarly(ctx)
	}
	return nil
}

// dialCoordinator connects to the coordinator when not connected yet, as
// a phase of its own for --timing. A failure is left to the call that
// follows, which dials again and reports it (CodeCoordinatorDown).
func (c *Client) dialCoordinator(ctx context.Context) {
	site, t := c.SiteInfo(), c.timingOf(ctx)
	if t == nil || c.host.Network().Connectedness(site.ID) == network.Connected {
		return
	}
	defer t.Begin("coordinator dial (transport, security, muxer)")()
	_ = c.host.Connect(ctx, site)
}

// ReportPath tells the coordinator how this jump's session connected (best
// effort: the report feeds the site's path statistics, in the
// coordinator's memory and metrics, not its audit). Call it when the
// session ends; only the first call reports. When the report went early
// (reportEarly), it waits for that one, at most pathReportTimeout.
func (j *Jump) ReportPath(ctx context.Context) {
	j.mu.Lock()
	w, done, early := j.path, j.reported, j.reporting
	j.reported = w != nil
	j.mu.Unlock()
	if early != nil {
		<-early // bounded by the report's own timeout
		return
	}
	if w == nil || done {
		return
	}
	j.sendPathReport(ctx, w)
}

// pathReportTimeout bounds a path report, early or at the end.
const pathReportTimeout = 5 * time.Second

// reportEarly sends the path report now, beside the session, when the
// path the jump connected on is final: direct or through a jumpoint (a
// relayed one may still turn direct by hole punching; it is reported at
// the end, by ReportPath). So the report is no longer a round trip to the
// coordinator after the session's answer (issue 17: 2–6 ms of a jump of
// `true`), and it is still delivered: ReportPath waits for it, and the
// counts it feeds are the same. Only the first call does anything.
func (j *Jump) reportEarly(ctx context.Context) {
	j.mu.Lock()
	w := j.path
	if w == nil || j.reported || j.reporting != nil {
		j.mu.Unlock()
		return
	}
	if k := w.Summary().Initial; k != PathDirect && k != PathJumpoint {
		j.mu.Unlock()
		return
	}
	done := make(chan struct{})
	j.reported, j.reporting = true, done
	j.mu.Unlock()
	go func() {
		defer close(done)
		j.sendPathReport(context.WithoutCancel(ctx), w)
	}()
}

// sendPathReport stops w and reports what it saw, within pathReportTimeout.
func (j *Jump) sendPathReport(ctx context.Context, w *PathWatch) {
	s := w.Summary()
	w.Stop()
	if !s.Connected {
		return
	}
	r := &pb.PathReport{Peer: []byte(j.ID), Initial: s.Initial.String(), Final: s.Final.String(),
		ConnectMillis: s.Connect.Milliseconds(), TimeToDirectMillis: s.TimeToDirect.Milliseconds()}
	ctx, cancel := context.WithTimeout(ctx, pathReportTimeout)
	defer cancel()
	defer j.c.timingOf(ctx).Begin("path report (to the coordinator)")()
	_, _ = j.c.do(ctx, &pb.Request{Body: &pb.Request_PathReport{PathReport: r}})
}

// PathStats reads the site's session path counts (administrators).
func (c *Client) PathStats(ctx context.Context) (*pb.PathStats, error) {
	r, err := c.do(ctx, &pb.Request{Body: &pb.Request_PathStats{PathStats: &pb.Empty{}}})
	return r.GetPathStats(), err
}

// Connect reaches peer id at its direct addresses, or through a relay,
// within ConnectTimeout.
func (c *Client) Connect(ctx context.Context, id peer.ID, direct, relays []ma.Multiaddr, forceRelay bool) error {
	h := c.host
	c.noteTarget(id, direct, relays)
	if h.Network().Connectedness(id) == network.Connected {
		return nil
	}
	addrs := dialAddrs(id, direct, relays, forceRelay)
	h.Peerstore().AddAddrs(id, addrs, peerstore.TempAddrTTL)
	// An explicit attempt must not be skipped because an earlier one failed
	// moments ago (the swarm's dial backoff), e.g. before the peer's
	// reservation on a relay was accepted.
	if sw, ok := h.Network().(*swarm.Swarm); ok {
		sw.Backoff().Clear(id)
	}
	dialCtx, cancel := context.WithTimeout(ctx, ConnectTimeout)
	defer cancel()
	if err := h.Connect(dialCtx, peer.AddrInfo{ID: id, Addrs: addrs}); err != nil {
		// The coordinator's addresses may be stale: ask the site DHT (dht.go).
		return c.connectFound(ctx, id, relays, forceRelay, catalog.Errorf(catalog.CodeConnectTimeout, "(%s at %v: %w)", id, addrs, err))
	}
	return nil
}

// Open opens a channel of the kind open describes (its grant is filled in).
// The channel opened early for the jump's Need.Open, when it is the same
// kind, only gets the grant (a channel whose grant could not be sent is
// opened anew: nothing ran on the peer for it). A relayed exec or file
// channel moves to a bulk connection through the relay's splice when the
// peer offers one (channel.Channel.SetBulkDialer).
func (j *Jump) Open(ctx context.Context, open *pb.ChannelOpen) (*channel.Channel, error) {
	ch, err := j.open(ctx, open)
	if err == nil {
		AllowBulkSwitch(ch)
	}
	return ch, err
}

func (j *Jump) open(ctx context.Context, open *pb.ChannelOpen) (*channel.Channel, error) {
	if err := j.Connect(ctx); err != nil {
		return nil, err
	}
	open = proto.CloneOf(open)
	open.Grant = j.Grant
	t := j.c.timingOf(ctx)
	if pd := j.takeEarly(open); pd != nil {
		end := t.Begin("grant on the early channel (checked by the peer)")
		ch, _, err := pd.Grant(ctx, j.Grant)
		end()
		if !errors.Is(err, channel.ErrGrantNotSent) {
			return ch, err
		}
	}
	defer t.Begin("channel open (grant checked by the peer)")()
	ch, _, err := channel.Open(ctx, j.host(), j.ID, open)
	return ch, err
}

// earlyOpen is a channel being opened, or opened, before its grant.
type earlyOpen struct {
	done chan struct{}
	pd   *channel.Pending // set when done, if it opened
}

// openEarly opens a channel of open's kind to id, once the early dial is
// over (dialed), with its grant to follow. The peer admits nothing until
// it has the grant and checked it (channel.Accept, then its admission);
// a channel whose grant never comes it resets after channel.GrantWait.
func (c *Client) openEarly(ctx context.Context, id peer.ID, dialed <-chan struct{}, open *pb.ChannelOpen) *earlyOpen {
	e := &earlyOpen{done: make(chan struct{})}
	t := c.timingOf(ctx)
	go func() {
		defer close(e.done)
		octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ConnectTimeout)
		defer cancel()
		select {
		case <-dialed:
		case <-octx.Done():
			return
		}
		start := time.Now()
		pd, err := channel.OpenPending(octx, c.host, id, open)
		if err == nil { // else Open opens one with its grant
			e.pd = pd
			t.Add("channel open, early (grant to follow)", start, time.Now())
		}
	}()
	return e
}

// cancel gives the early channel up (the peer resets it unused); nil does
// nothing.
func (e *earlyOpen) cancel() {
	if e == nil {
		return
	}
	go func() {
		<-e.done
		if e.pd != nil {
			e.pd.Cancel()
		}
	}()
}

// takeEarly is the early channel, if there is one and open (with its
// grant) is of its kind on this console's host; any other is given up.
func (j *Jump) takeEarly(open *pb.ChannelOpen) *channel.Pending {
	j.mu.Lock()
	e, tunnel := j.early, j.tunnel
	j.early = nil
	j.mu.Unlock()
	if e == nil {
		return nil
	}
	select {
	case <-e.done:
	default:
		if tunnel != nil || j.Path().Kind != PathDirect {
			// The early dial still waits for a direct connection (the
			// cached addresses do not answer) while the jump went through
			// a relay: not worth waiting for (up to ConnectTimeout).
			e.cancel()
			return nil
		}
		<-e.done // a direct connection is up: the early dial is over, the open follows at once
	}
	if e.pd == nil {
		return nil
	}
	want := proto.CloneOf(open)
	want.Grant, want.GrantFollows = nil, true
	if tunnel != nil || e.pd.Peer() != j.ID || !proto.Equal(e.pd.Open(), want) {
		e.pd.Cancel()
		return nil
	}
	return e.pd
}

// Path is how the console reaches the peer now.
func (j *Jump) Path() Path {
	j.mu.Lock()
	t := j.tunnel
	j.mu.Unlock()
	if t != nil {
		return pathTo(t, j.ID, t.classify)
	}
	return PathTo(j.c.host, j.ID)
}

// PathLine is what jump -v prints: the peer's name, its ID and the path
// ("web-01 12D3… via direct /ip4/…/tcp/…").
func (j *Jump) PathLine() string {
	path := j.Path()
	via := "via " + path.String()
	if path.Kind == PathJumpoint {
		via = path.String() // "via jumpoint NAME (ADDR)"
	}
	return j.Peer.GetPeer().GetSettings().GetName() + " " + j.ID.String() + " " + via
}

// host is the host sessions to the peer run on: the tunnel host for a
// peer behind jumpoints (once connected), else the console's own.
func (j *Jump) host() host.Host {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.tunnel != nil {
		return j.tunnel
	}
	return j.c.host
}

// connectThroughJumpoint starts the tunnel host (once), reaches a
// jumpoint from the main host, then the peer from the tunnel host.
func (j *Jump) connectThroughJumpoint(ctx context.Context) error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return fmt.Errorf("jump to %s: %w", j.ID, net.ErrClosed)
	}
	t := j.tunnel
	if t == nil {
		refs, err := jumpointRefs(j.Jumpoints)
		if err == nil {
			t, err = newTunnelHost(j.c.host, j.Addrs, refs, j.Grant)
		}
		if err != nil {
			j.mu.Unlock()
			return err
		}
		j.tunnel, j.path = t, watchPath(t, j.ID, t.classify)
		j.c.track(t)
	}
	w := j.path
	j.mu.Unlock()
	if t.Network().Connectedness(j.ID) == network.Connected {
		return nil
	}
	if err := t.reachJumpoint(ctx, j.c, j.Relays, j.ForceRelay); err != nil {
		return err
	}
	dialCtx, cancel := context.WithTimeout(ctx, ConnectTimeout)
	defer cancel()
	if sw, ok := t.Network().(*swarm.Swarm); ok {
		sw.Backoff().Clear(j.ID)
	}
	if err := t.Connect(dialCtx, peer.AddrInfo{ID: j.ID, Addrs: j.Addrs}); err != nil {
		return catalog.Errorf(catalog.CodeConnectTimeout, "(%s through jumpoint: %w)", j.ID, err)
	}
	if w.Connected() {
		j.reportEarly(ctx)
	}
	return nil
}

// Close ends the jump's tunnel host, if it has one, and the sessions on
// it. A jump is closed by WithJump when its session ends.
func (j *Jump) Close() error {
	j.mu.Lock()
	t, e := j.tunnel, j.early
	j.closed, j.early = true, nil
	j.mu.Unlock()
	e.cancel()
	if t == nil {
		return nil
	}
	j.c.untrack(t)
	return t.Close()
}

// Audit reads the coordinator's audit log (administrators): the newest
// req.Limit matching events (all of them when 0), oldest first. The
// coordinator answers in pages that fit a control message; Audit follows
// their cursors.
func (c *Client) Audit(ctx context.Context, req *pb.AuditRequest) ([]*pb.AuditEvent, error) {
	req = proto.CloneOf(req)
	want, total := int(req.GetLimit()), 0
	var pages [][]*pb.AuditEvent // newest page first
	for {
		if want > 0 {
			req.Limit = uint32(want - total)
		}
		r, err := c.do(ctx, &pb.Request{Body: &pb.Request_Audit{Audit: req}})
		if err != nil {
			return nil, err
		}
		page := r.GetAudit()
		pages, total = append(pages, page.GetEvents()), total+len(page.GetEvents())
		if len(page.GetNextCursor()) == 0 || len(page.GetEvents()) == 0 || (want > 0 && total >= want) {
			break
		}
		req.Cursor = page.GetNextCursor()
	}
	out := make([]*pb.AuditEvent, 0, total)
	for i := len(pages) - 1; i >= 0; i-- {
		out = append(out, pages[i]...)
	}
	return out, nil
}

// dialAddrs are the peer's direct addresses (TCP preferred) followed by
// circuits through each relay. libp2p's dialer tries relayed addresses only
// when direct ones have not answered within a short delay, and hole
// punching may then upgrade a relayed connection to a direct one.
func dialAddrs(id peer.ID, direct, relays []ma.Multiaddr, forceRelay bool) []ma.Multiaddr {
	var out []ma.Multiaddr
	if !forceRelay {
		out = mesh.PreferTCP(direct)
	}
	circuit := ma.StringCast("/p2p-circuit/p2p/" + id.String())
	for _, r := range preferTCPPerRelay(relays) {
		out = append(out, r.Encapsulate(circuit))
	}
	return out
}

// preferTCPPerRelay keeps each relay's TCP addresses when it has any.
// Circuits through one relay share the dial to it: with a QUIC and a TCP
// circuit, a console whose network drops UDP waited for QUIC's 5 s
// handshake timeout before the TCP circuit could go (measured in the lab's
// grid). Sessions prefer TCP anyway (mesh.PreferTCP).
func preferTCPPerRelay(relays []ma.Multiaddr) []ma.Multiaddr {
	byRelay := map[string][]ma.Multiaddr{}
	var order []string
	for _, r := range relays {
		id, _ := r.ValueForProtocol(ma.P_P2P)
		if _, ok := byRelay[id]; !ok {
			order = append(order, id)
		}
		byRelay[id] = append(byRelay[id], r)
	}
	var out []ma.Multiaddr
	for _, id := range order {
		out = append(out, mesh.PreferTCP(byRelay[id])...)
	}
	return out
}
