package coordinator

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// GrantLifetime is how long a jump grant is valid (the peer binds it to
// the connection it first arrives on, so sessions outlive it).
const GrantLifetime = 60 * time.Second

// jump answers a console's request for a grant, checking in the seeds'
// order; every refusal is audited with its code.
func (s *Service) jump(c *caller, r *pb.JumpRequest) (*pb.Response, error) {
	now := s.revoker.grantTime(s.clock.Now()) // before the checks read anything: see revoke.go
	check := s.checkJump
	if r.GetVia() != "" || r.GetTarget() != "" {
		check = s.checkJumpTarget
	}
	resp, ev, err := check(c, r, now)
	if errors.Is(err, errPeerChanged) {
		// The peer's record changed through another coordinator since
		// this one read it (peerStore.current), and is now filed here:
		// every check again, on the record as it is.
		resp, ev, err = check(c, r, now)
	}
	if ev == nil {
		ev = &pb.AuditEvent{Detail: r.GetRef()}
	}
	ev.Kind, ev.User, ev.Technician, ev.Capability = AuditGrant, c.name(), []byte(c.peer), r.GetCapability()
	if err != nil {
		ev.Kind, ev.Code, ev.Detail = AuditRefused, string(catalog.CodeOf(err)), err.Error()
	}
	if aerr := s.audit(ev); aerr != nil && err == nil {
		// Fail closed: a grant the audit log does not hold is not issued.
		// audit logged aerr; the console gets the code, not the store's text.
		if body, perr := grant.Parse(resp.GetJump().GetGrant()); perr != nil {
			// Not expected: checkJump parsed these bytes. The nonce then
			// stays reserved until the grant expires.
			s.log.Error("releasing a grant the audit log refused", logError, perr)
		} else {
			s.jumps.release(body.GetNonce())
		}
		return nil, catalog.NewError(catalog.CodeAuditFailed)
	}
	return resp, err
}

func (s *Service) checkJump(c *caller, r *pb.JumpRequest, now time.Time) (*pb.Response, *pb.AuditEvent, error) {
	v, err := s.resolvePeer(c, r.GetRef())
	if err != nil {
		return nil, nil, err
	}
	rec := v.GetPeer()
	id := peer.ID(rec.GetId())
	ev := &pb.AuditEvent{Peer: rec.GetId(), PeerName: rec.GetSettings().GetName()}
	switch v.GetStatus() {
	case StatusUninstalled:
		return nil, ev, catalog.NewError(catalog.CodePeerUninstalled)
	case StatusDisabled:
		return nil, ev, catalog.NewError(catalog.CodePeerDisabled)
	case StatusOffline, StatusLost:
		return nil, ev, catalog.Errorf(catalog.CodePeerOffline, "(last seen %s)", time.Unix(rec.GetLastSeenUnix(), 0).UTC().Format(time.RFC3339))
	case StatusPassive:
		// The console wakes it (wake request) and asks again once it is online.
		return nil, ev, catalog.Errorf(catalog.CodePeerPassive, "(passive since %s)", time.Unix(rec.GetPassiveUnix(), 0).UTC().Format(time.RFC3339))
	}
	if err := s.checkJumpPolicy(rec, now); err != nil {
		return nil, ev, err
	}
	st := s.settings()
	if !st.GetConcurrentJumps() {
		others, err := s.sessionHolders(id, c.name())
		if err != nil {
			return nil, ev, err
		}
		if len(others) > 0 {
			return nil, ev, catalog.Errorf(catalog.CodeSessionInUse, "(in session: %s)", strings.Join(others, ", "))
		}
	}
	if r.GetProtocol() != "" && !slices.Contains(rec.GetInfo().GetProtocols(), r.GetProtocol()) {
		return nil, ev, catalog.Errorf(catalog.CodePeerOtherVersion, "(the peer runs %s and serves %v, not %s)",
			orUnknown(rec.GetInfo().GetVersion()), rec.GetInfo().GetProtocols(), r.GetProtocol())
	}
	body, err := s.grantBody(c, rec, now)
	if err != nil {
		return nil, ev, err
	}
	if want := r.GetCapability(); want != 0 && (body.GetCapabilities()|body.GetCapabilitiesNotPresent())&want == 0 {
		return nil, ev, catalog.Errorf(catalog.CodePermissionDenied, "(the peer's session policies do not allow %s)", grant.CapabilityName(want))
	}
	if err := s.grantCommands(body, r); err != nil {
		return nil, ev, err
	}
	g, err := grant.Sign(body, s.signer)
	if err != nil {
		return nil, ev, catalog.Internalf("(signing the grant: %w)", err)
	}
	signed, err := grant.Parse(g)
	if err != nil {
		return nil, ev, catalog.Internalf("(reading the grant just signed: %w)", err)
	}
	if err := s.jumps.reserve(signed.GetNonce(), c.name(), now, st, s.peers.current(rec)); err != nil {
		return nil, ev, err
	}
	ev.SessionId = fmt.Sprintf("%x", signed.GetNonce())
	return &pb.Response{Body: &pb.Response_Jump{Jump: &pb.JumpResponse{Grant: g, Peer: v, Addrs: encodeAddrs(s.peerAddrs(c.peer, id)), PeerIp: s.peerIP(id),
		Relays: encodeAddrs(s.relayAddrs()), Jumpoints: s.peerJumpoints(rec)}}}, ev, nil
}

func orUnknown(s string) string {
	if s == "" {
		return "an unknown version"
	}
	return s
}

// checkJumpPolicy applies the peer's jump policy schedule, in its time zone.
func (s *Service) checkJumpPolicy(rec *pb.Peer, now time.Time) error {
	name := rec.GetSettings().GetJumpPolicy()
	if name == "" {
		return nil
	}
	var p *pb.JumpPolicy
	if err := s.view(func(tx *Tx) (err error) { p, err = tx.JumpPolicy(name); return err }); err != nil {
		return err
	}
	if p == nil {
		// Fail closed: a schedule that is gone allows nothing (not everything).
		return catalog.Errorf(catalog.CodePolicyMissing, "(jump policy %s)", name)
	}
	ok, err := JumpPolicyAllows(p, now)
	if err != nil {
		return err
	}
	if !ok {
		var windows []string
		for _, w := range p.GetWindows() {
			windows = append(windows, FormatWindow(w))
		}
		return catalog.Errorf(catalog.CodeJumpPolicyClosed, "(jump policy %s: %s, %s)", name, strings.Join(windows, "; "), p.GetTimeZone())
	}
	return nil
}

// grantBody builds the grant: capabilities from the session policies for
// both presence cases (the peer decides which applies).
func (s *Service) grantBody(c *caller, rec *pb.Peer, now time.Time) (*pb.JumpGrantBody, error) {
	present, presentName, consent, err := s.policyCaps(rec.GetSettings().GetSessionPolicyPresent())
	if err != nil {
		return nil, err
	}
	absent, absentName, _, err := s.policyCaps(rec.GetSettings().GetSessionPolicyNotPresent())
	if err != nil {
		return nil, err
	}
	return &pb.JumpGrantBody{SiteId: []byte(s.siteID), Technician: []byte(c.peer), Peer: rec.GetId(),
		Capabilities: present, CapabilitiesNotPresent: absent, SessionPolicy: presentName, SessionPolicyNotPresent: absentName,
		RequireConsent: consent, IssuedUnix: now.Unix(), ExpiresUnix: now.Add(GrantLifetime).Unix(), User: c.name(),
		ConsoleIp: consoleIP(c.addr)}, nil
}

// consoleIP is the IP the technician's request came from, for the grant's
// console_ip (the one address a peer may aim port-mapping probes at): the
// IP of the control connection's remote address, IPv4 in IPv6 as IPv4; ""
// when the request came through a relay circuit (that IP would be the
// relay's) or the address has no usable IP (none, unspecified, or
// link-local, which means nothing without its zone). It comes from the connection,
// never from the request, so a console cannot choose it.
func consoleIP(a ma.Multiaddr) string {
	if a == nil {
		return ""
	}
	if _, err := a.ValueForProtocol(ma.P_CIRCUIT); err == nil {
		return ""
	}
	ip, err := manet.ToIP(a)
	if err != nil {
		return ""
	}
	addr, ok := netip.AddrFromSlice(ip)
	if addr = addr.Unmap(); !ok || addr.IsUnspecified() || addr.IsLinkLocalUnicast() {
		return ""
	}
	return addr.String()
}

// policyCaps reads a session policy; no policy allows everything, a policy
// named but missing is an error (fail closed: the peer allows no jumps).
func (s *Service) policyCaps(name string) (uint32, string, bool, error) {
	if name == "" {
		return grant.All, "", false, nil
	}
	var p *pb.SessionPolicy
	if err := s.view(func(tx *Tx) (err error) { p, err = tx.SessionPolicy(name); return err }); err != nil {
		return 0, "", false, err
	}
	if p == nil {
		return 0, "", false, catalog.Errorf(catalog.CodePolicyMissing, "(session policy %s)", name)
	}
	var caps uint32
	for _, c := range []struct {
		on  bool
		bit uint32
	}{{p.GetShell(), grant.Shell}, {p.GetExec(), grant.Exec}, {p.GetForward(), grant.Forward}, {p.GetFileTransfer(), grant.FileTransfer}} {
		if c.on {
			caps |= c.bit
		}
	}
	return caps, name, p.GetRequireConsent(), nil
}
