package coordinator

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/wake"
)

// Waking a peer (jumpmesh wake, jump --wake, a jump to a passive peer):
// the coordinator picks wakers, signs one wake command (mesh/wake) and
// orders each waker to send it on its LAN; for a passive peer it also
// sends the command to the peer's passive port itself.
//
// Decisions:
//   - Wakers: up to MaxGatewayWakers online peers behind the target's
//     gateway (the same-gateway index, gateways.go), the most recently
//     seen first, those this coordinator holds before those other
//     coordinators of the site hold (ordered through them: wakeremote.go),
//     plus every online jumpoint the target talks through.
//     Peers disabled by their local user are not asked.
//   - Only a technician who can see the target may wake it (peer_not_found
//     otherwise, as for a jump). A wake is not a jump: no jump policy
//     window, no session start.
//   - allow-wake=false refuses Wake-on-LAN (wake_not_allowed), not the
//     wake of a passive peer: a passive peer is reachable only that way.
//   - The cooldown (wake.Cooldown, per target, site-wide) is kept in the
//     store (wk/), so a restart does not reset it. It is taken in one
//     transaction with its check, so two technicians cannot both pass; an
//     attempt that reached no waker and sent nothing itself gives it back.
//     Refusals before sending (no neighbour, not needed) do not start it.
//   - The command's expiry is on the wall clock (time.Now), not the
//     injected one: wakers and passive peers check it with theirs.
//   - A technician sees the names of wakers they may see; another group's
//     neighbour shows as "a peer on the same network", without its ID. The
//     audit (administrators) names every waker.

// AuditWake is the audit kind of a wake attempt (refused ones included).
const AuditWake = "wake"

// Wake methods, as WakeResponse.method says them.
const (
	WakeMethodWOL     = "wol"
	WakeMethodPassive = "passive"
)

// Bounds of a wake.
const (
	// MaxGatewayWakers is how many same-gateway peers are asked.
	MaxGatewayWakers = 2
	// WakeOrderTimeout bounds the whole send: orders to every waker and
	// the coordinator's own sends to a passive peer.
	WakeOrderTimeout = 10 * time.Second
	// A command must fit wake.MaxCommand: at most this many of each.
	wakeMaxMACs, wakeMaxIPs, wakeMaxPassiveAddrs = 8, 8, 16
	// wakeValidity is how long a command is valid (at most wake.MaxValidity).
	wakeValidity = 30 * time.Second
)

// WakeSender reaches wakers and passive ports; the coordinator's host
// does (hostWakeSender), tests may replace it.
type WakeSender interface {
	Order(ctx context.Context, waker peer.ID, cmd *pb.WakeCommand) (*pb.WakeReport, error)
	Forward(ctx context.Context, cmd *pb.WakeCommand, addrs []string) []string
}

// hostWakeSender orders wakers over the coordinator's libp2p host.
type hostWakeSender struct{ h host.Host }

func (w hostWakeSender) Order(ctx context.Context, waker peer.ID, cmd *pb.WakeCommand) (*pb.WakeReport, error) {
	return wake.Order(ctx, w.h, waker, cmd)
}

func (w hostWakeSender) Forward(ctx context.Context, cmd *pb.WakeCommand, addrs []string) []string {
	return wake.Forward(ctx, cmd, addrs)
}

// wakeMetric counts wake attempts by result ("ok" or a catalog code).
func newWakeMetric() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "jumpmesh", Subsystem: "coordinator", Name: "wakes_total",
		Help: "Wake attempts (jumpmesh wake, --wake, jumps to passive peers), by result (\"ok\" or the refusal's code).",
	}, []string{"result"})
}

// RegisterWakeMetrics adds jumpmesh_coordinator_wakes_total to reg.
func (s *Service) RegisterWakeMetrics(reg prometheus.Registerer) { reg.MustRegister(s.wakes) }

// wakerRef is one waker chosen for a target.
type wakerRef struct {
	id         peer.ID
	name, kind string
	group      string // a peer's jump group (what the caller may see)
	// holder is the instance of the coordinator holding the waker when
	// another one does: the order goes through it (wakeremote.go).
	holder string
}

// wakeRequest answers Request.wake.
func (s *Service) wakeRequest(c *caller, r *pb.WakeRequest) (*pb.Response, error) {
	ev := &pb.AuditEvent{Kind: AuditWake, User: c.name(), Technician: []byte(c.peer)}
	resp, err := s.tryWake(c, r, ev)
	result := "ok"
	if err != nil {
		result = string(catalog.CodeOf(err))
		ev.Code = result
		if ev.Peer == nil {
			ev.Detail = strings.TrimSpace(r.GetRef() + ": " + err.Error())
		} else {
			ev.Detail = strings.TrimSpace(ev.GetDetail() + " " + err.Error())
		}
	}
	s.wakes.WithLabelValues(result).Inc()
	_ = s.audit(ev) // logged by audit; what was sent cannot be taken back
	return resp, err
}

func (s *Service) tryWake(c *caller, r *pb.WakeRequest, ev *pb.AuditEvent) (*pb.Response, error) {
	plan, err := s.planWake(c, r, ev)
	if err != nil {
		return nil, err
	}
	body := plan.body
	body.TargetId = []byte(plan.id)
	body.ExpiresUnixMillis = time.Now().Add(wakeValidity).UnixMilli() // wall clock: see above
	cmd, err := wake.Sign(s.signer, body)
	if err != nil {
		return nil, catalog.Internalf("(signing the wake command: %w)", err)
	}
	ev.Detail = "wakers: " + wakerNames(plan.wakers)
	left, err := s.reserveWake(plan.id, plan.now)
	if err != nil || left > 0 {
		return nil, cmpErr(err, cooldownError(left))
	}
	out, delivered := s.sendWake(plan.wakers, cmd, body.GetPassiveAddrs())
	out.Method = plan.method
	out.NextAttemptUnixMillis = plan.now.Add(wake.Cooldown).UnixMilli()
	sent := len(out.GetSent())
	for _, w := range out.GetWakers() {
		sent += len(w.GetSent())
	}
	ev.Detail += fmt.Sprintf("; %d sent", sent)
	if delivered == 0 && len(out.GetSent()) == 0 {
		s.releaseWake(plan.id, plan.now) // no attempt happened: no cooldown
	}
	s.hideWakers(c, plan.wakers, out) // before anything of theirs reaches c, errors included
	if sent == 0 {
		return nil, catalog.Errorf(catalog.CodeWakeFailed, "(%s)", wakerErrors(out))
	}
	return &pb.Response{Body: &pb.Response_Wake{Wake: out}}, nil
}

// wakePlan is a wake that passed every check: whom to ask, and what.
type wakePlan struct {
	id     peer.ID
	now    time.Time // the coordinator's clock, for the cooldown
	method string
	wakers []wakerRef
	body   *pb.WakeBody // not signed yet
}

// planWake runs the checks, in this order: the password's form, the peer
// c may see, its status, the cooldown, allow-wake, the wakers, what the
// command can name. Nothing is sent or stored.
func (s *Service) planWake(c *caller, r *pb.WakeRequest, ev *pb.AuditEvent) (*wakePlan, error) {
	if n := len(r.GetPassword()); n != 0 && n != 4 && n != 6 {
		return nil, catalog.Errorf(catalog.CodeInvalidArgument,
			"A SecureOn password is 6 bytes written like a MAC address (01-23-45-67-89-AB), or 4; got %d bytes.", n)
	}
	v, err := s.resolvePeer(c, r.GetRef())
	if err != nil {
		return nil, err
	}
	rec := v.GetPeer()
	name := rec.GetSettings().GetName()
	p := &wakePlan{id: peer.ID(rec.GetId()), now: s.clock.Now(), method: WakeMethodWOL}
	ev.Peer, ev.PeerName = rec.GetId(), name
	switch v.GetStatus() {
	case StatusOnline, StatusDisabled:
		return nil, catalog.Errorf(catalog.CodeWakeNotNeeded, "(%s is online)", name)
	case StatusUninstalled:
		return nil, catalog.NewError(catalog.CodePeerUninstalled)
	}
	passive := v.GetStatus() == StatusPassive
	if passive {
		p.method = WakeMethodPassive
	}
	ev.Action = p.method
	st := s.settings()
	// The cooldown before allow-wake: a passive peer that another
	// technician has just woken is offline until its hello, and a second
	// jump to it must hear that someone is waking it (and wait), not that
	// waking is off (TestJumpWakesAPassivePeer met it under load).
	if left, err := s.wakeCooldownLeft(p.id, p.now); err != nil || left > 0 {
		return nil, cmpErr(err, cooldownError(left))
	}
	if !passive && !st.GetAllowWake() {
		return nil, catalog.NewError(catalog.CodeWakeNotAllowed)
	}
	if p.wakers, err = s.wakersFor(rec); err != nil {
		return nil, err
	}
	if len(p.wakers) == 0 && !passive {
		return nil, noNeighbourError(rec)
	}
	p.body = wakeBody(rec, r.GetPassword(), passive, st)
	switch {
	case !passive && len(p.body.GetMacs()) == 0:
		return nil, catalog.Errorf(catalog.CodeWakeFailed,
			"(%s reported no MAC address: its version reports none, or it has no Ethernet interface)", name)
	case passive && len(p.body.GetPassiveAddrs()) == 0 && len(p.wakers) == 0:
		return nil, catalog.Errorf(catalog.CodeWakeFailed, "(%s reported no address to send the wake command to)", name)
	}
	return p, nil
}

// cmpErr is err when there is one, else alt.
func cmpErr(err, alt error) error {
	if err != nil {
		return err
	}
	return alt
}

func cooldownError(left time.Duration) error {
	secs := int64((left + time.Second - 1) / time.Second)
	return catalog.Errorf(catalog.CodeWakeCooldown, "(%d s left)", secs)
}

// noNeighbourError says which gateway the peer last had, or why it has none.
func noNeighbourError(rec *pb.Peer) error {
	info := rec.GetInfo()
	name := rec.GetSettings().GetName()
	if k, ok := gatewayOf(rec); ok {
		detail := fmt.Sprintf("(%s's last gateway was %s; no online peer is behind it", name, k)
		if len(rec.GetJumpoints()) > 0 {
			detail += ", and its jumpoints are offline"
		}
		return catalog.Errorf(catalog.CodeWakeNoNeighbor, "%s)", detail)
	}
	gw := info.GetGatewayIp()
	if gw == "" {
		gw = "none reported"
	}
	detail := fmt.Sprintf("(%s's gateway MAC is unknown (gateway %s), so it has no neighbours", name, gw)
	if len(rec.GetJumpoints()) > 0 {
		detail += ", and its jumpoints are offline"
	}
	return catalog.Errorf(catalog.CodeWakeNoNeighbor, "%s)", detail)
}

// wakersFor picks rec's wakers: same-gateway peers, then its online jumpoints.
func (s *Service) wakersFor(rec *pb.Peer) ([]wakerRef, error) {
	var out []wakerRef
	if k, ok := gatewayOf(rec); ok {
		for _, n := range s.peers.sameGateway(k, peer.ID(rec.GetId()), MaxGatewayWakers) {
			out = append(out, wakerRef{id: n.id, name: n.name, kind: "peer", group: n.group})
		}
		// Too few held here: those other coordinators hold (wakeremote.go).
		for _, n := range s.peers.sameGatewayElsewhere(k, peer.ID(rec.GetId()), MaxGatewayWakers-len(out)) {
			out = append(out, wakerRef{id: n.id, name: n.name, kind: "peer", group: n.group, holder: n.holder})
		}
	}
	if len(rec.GetJumpoints()) == 0 {
		return out, nil
	}
	now := s.clock.Now()
	err := s.view(func(tx *Tx) error {
		for _, raw := range rec.GetJumpoints() {
			id := peer.ID(raw)
			if seen, ok := s.jumpointBook.get(id); !ok || !seen.online(now) {
				continue
			}
			name, err := tx.UserByKey(id)
			if err != nil {
				return err
			}
			if name == "" {
				continue // no longer a member
			}
			out = append(out, wakerRef{id: id, name: name, kind: "jumpoint"})
		}
		return nil
	})
	return out, err
}

func wakerNames(ws []wakerRef) string {
	if len(ws) == 0 {
		return "none"
	}
	names := make([]string, len(ws))
	for i, w := range ws {
		names[i] = w.name + " (" + w.kind + ")"
	}
	return strings.Join(names, ", ")
}

// wakeBody is what the command orders: for Wake-on-LAN the target's MACs
// (the default route's first), its gateway and private IPs and the
// password; for a passive peer the IP:port pairs of its passive port.
func wakeBody(rec *pb.Peer, password []byte, passive bool, st *pb.Settings) *pb.WakeBody {
	info := rec.GetInfo()
	body := &pb.WakeBody{GatewayIp: info.GetGatewayIp()}
	var ips []netip.Addr
	for _, s := range info.GetPrivateIps() {
		if a, ok := parseIP(s); ok && !slices.Contains(ips, a) {
			ips = append(ips, a)
		}
	}
	// A loopback address is of use only when the peer has no other (a
	// peer on the coordinator's own host, a test).
	if slices.ContainsFunc(ips, func(a netip.Addr) bool { return !a.IsLoopback() }) {
		ips = slices.DeleteFunc(ips, netip.Addr.IsLoopback)
	}
	for _, a := range ips[:min(len(ips), wakeMaxIPs)] {
		body.TargetIps = append(body.TargetIps, a.String())
	}
	if passive {
		port := strconv.Itoa(int(st.GetPassivePort()))
		if a, ok := parseIP(rec.GetPublicAddr()); ok && !slices.Contains(ips, a) {
			ips = append(ips, a)
		}
		for _, a := range ips[:min(len(ips), wakeMaxPassiveAddrs)] {
			body.PassiveAddrs = append(body.PassiveAddrs, net.JoinHostPort(a.String(), port))
		}
		return body
	}
	body.Secureon = password
	nics := slices.Clone(info.GetNics())
	slices.SortStableFunc(nics, func(a, b *pb.Nic) int {
		switch {
		case a.GetDefaultRoute() == b.GetDefaultRoute():
			return 0
		case a.GetDefaultRoute():
			return -1
		}
		return 1
	})
	for _, n := range nics {
		mac, err := net.ParseMAC(n.GetMac())
		if err != nil || len(mac) != 6 || isZeroMAC(mac) || slices.Contains(body.Macs, mac.String()) {
			continue
		}
		if len(body.Macs) < wakeMaxMACs {
			body.Macs = append(body.Macs, mac.String())
		}
	}
	return body
}

// parseIP reads an address as peers report them ("10.0.0.5", or with a
// prefix length); an unspecified address is of no use.
func parseIP(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	a, err := netip.ParseAddr(s)
	if err != nil {
		p, perr := netip.ParsePrefix(s)
		if perr != nil {
			return netip.Addr{}, false
		}
		a = p.Addr()
	}
	a = a.Unmap().WithZone("")
	return a, a.IsValid() && !a.IsUnspecified()
}

// sendWake orders every waker and, for a passive peer, sends the command
// to its passive addresses itself, all at once, within WakeOrderTimeout.
// delivered counts the wakers that answered the order.
func (s *Service) sendWake(wakers []wakerRef, cmd *pb.WakeCommand, passiveAddrs []string) (*pb.WakeResponse, int) {
	ctx, cancel := context.WithTimeout(context.Background(), WakeOrderTimeout)
	defer cancel()
	out := &pb.WakeResponse{Wakers: make([]*pb.Waker, len(wakers))}
	delivered := make([]bool, len(wakers))
	var wg sync.WaitGroup
	for i, w := range wakers {
		out.Wakers[i] = &pb.Waker{Id: []byte(w.id), Name: w.name, Kind: w.kind}
		wg.Add(1)
		go func() {
			defer wg.Done()
			order := func(ctx context.Context, w wakerRef, cmd *pb.WakeCommand) (*pb.WakeReport, error) {
				return s.wakeSender.Order(ctx, w.id, cmd)
			}
			if w.holder != "" {
				order = s.orderRemote
			} else if s.wakeSender == nil {
				out.Wakers[i].Error = catalog.ErrorToPB(catalog.Errorf(catalog.CodeWakeFailed, "(this coordinator has no network)"))
				return
			}
			// A report that arrived is delivered, even with an error in it.
			rep, err := order(ctx, w, cmd)
			if rep == nil {
				out.Wakers[i].Error = catalog.ErrorToPB(catalog.Errorf(catalog.CodeWakeFailed, "(ordering %s: %v)", w.name, err))
				return
			}
			delivered[i] = true
			out.Wakers[i].Sent, out.Wakers[i].Error = rep.GetSent(), rep.GetError()
			if out.Wakers[i].Error == nil && err != nil {
				out.Wakers[i].Error = catalog.ErrorToPB(err)
			}
		}()
	}
	if len(passiveAddrs) > 0 && s.wakeSender != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out.Sent = s.wakeSender.Forward(ctx, cmd, passiveAddrs)
		}()
	}
	wg.Wait()
	n := 0
	for _, d := range delivered {
		if d {
			n++
		}
	}
	for _, w := range out.Wakers {
		if len(w.GetSent()) == 0 && w.GetError() == nil {
			w.Error = catalog.ErrorToPB(catalog.Errorf(catalog.CodeWakeFailed, "(%s sent nothing)", w.GetName()))
		}
	}
	return out, n
}

// wakerErrors sums up why nothing was sent.
func wakerErrors(out *pb.WakeResponse) string {
	var parts []string
	for _, w := range out.GetWakers() {
		parts = append(parts, w.GetName()+": "+catalog.ErrorFromPB(w.GetError()).Error())
	}
	if len(parts) == 0 {
		return "no waker, and the passive addresses did not answer"
	}
	return strings.Join(parts, "; ")
}

// hideWakers blanks the peers c may not see: a technician learns that a
// neighbour was asked, not which host of another group it was.
func (s *Service) hideWakers(c *caller, wakers []wakerRef, out *pb.WakeResponse) {
	vis, err := s.visibilityOf(c)
	if err != nil {
		vis = visibility{} // see nothing rather than everything
	}
	for i, w := range wakers {
		if w.kind == "peer" && !vis.allows(w.group) {
			out.Wakers[i].Id, out.Wakers[i].Name = nil, "a peer on the same network"
			if e := out.Wakers[i].GetError(); e != nil {
				e.Detail = ""
			}
		}
	}
}

// wakeCooldownLeft is how long until id may be woken again.
func (s *Service) wakeCooldownLeft(id peer.ID, now time.Time) (time.Duration, error) {
	var last time.Time
	if err := s.view(func(tx *Tx) (err error) { last, err = tx.WakeAttempt(id); return err }); err != nil {
		return 0, err
	}
	return cooldownLeft(last, now), nil
}

func cooldownLeft(last, now time.Time) time.Duration {
	if last.IsZero() {
		return 0
	}
	return max(0, last.Add(wake.Cooldown).Sub(now))
}

// reserveWake starts id's cooldown at now unless one runs; it returns what
// is left of a running one. Check and write are one transaction: of two
// technicians waking the same peer at once, one is refused.
func (s *Service) reserveWake(id peer.ID, now time.Time) (time.Duration, error) {
	var left time.Duration
	err := s.update(func(tx *Tx) error {
		last, err := tx.WakeAttempt(id)
		if err != nil {
			return err
		}
		if left = cooldownLeft(last, now); left > 0 {
			return nil
		}
		return tx.PutWakeAttempt(id, now)
	})
	return left, err
}

// releaseWake gives back a cooldown taken at now (nothing was sent).
func (s *Service) releaseWake(id peer.ID, now time.Time) {
	err := s.update(func(tx *Tx) error {
		last, err := tx.WakeAttempt(id)
		if err != nil || last.UnixMilli() != now.UnixMilli() {
			return err
		}
		return tx.DeleteWakeAttempt(id)
	})
	if err != nil {
		s.log.Warn("releasing a wake cooldown", logPeer, id, logError, err)
	}
}

// sweepWakes drops wake attempts whose cooldown is over.
func (s *Service) sweepWakes(now time.Time) {
	err := s.update(func(tx *Tx) error {
		all, err := tx.WakeAttempts()
		if err != nil {
			return err
		}
		for id, at := range all {
			if cooldownLeft(at, now) == 0 {
				if err := tx.DeleteWakeAttempt(id); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		s.log.Warn("sweeping wake attempts", logError, err)
	}
}

// peerPassive records that the peer on sess went passive. PeerPassive
// names no peer: the mark is always the stream's own (authenticated)
// peer's, and only while sess is still its session (an old stream
// read late must not mark a peer that has reconnected since).
func (s *Service) peerPassive(sess *peerSession, now time.Time) {
	if s.peers.session(sess.id) != sess {
		return
	}
	_, err := s.peers.modify(sess.id, func(rec *pb.Peer) error {
		rec.PassiveUnix, rec.LastSeenUnix = now.Unix(), now.Unix()
		return nil
	})
	if err != nil {
		s.log.Warn("recording peer passive", logPeer, sess.id, logError, err)
		return
	}
	s.log.Info("peer passive", logPeer, sess.id)
}
