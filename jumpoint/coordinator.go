package jumpoint

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/member"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// The jumpoint's side of the control protocol: it enrolls as a site
// member (mesh/member) with the role jumpoint, then fetches its ACL.

// The jumpoint's identity in its data directory: its key (mode 0600),
// which is its libp2p peer ID and so the member the coordinator knows, and
// its member config (site, coordinator addresses, jumpoint user).
const (
	KeyFile    = "jumpoint.key"
	ConfigFile = "jumpoint.json"
)

// files are the jumpoint's member files in dir.
func files(dir string) member.Files {
	return member.Files{Dir: dir, Key: KeyFile, Config: ConfigFile}
}

// enroll returns the jumpoint's member client on the host hc builds,
// enrolling with the invite on the first run (member.Daemon.Serve).
func enroll(ctx context.Context, cfg *Config, log *slog.Logger, hc mesh.HostConfig) (*member.Client, error) {
	d := member.Daemon{Files: files(cfg.DataDir), Role: pb.Role_ROLE_JUMPOINT, Party: "jumpoint"}
	return d.Serve(ctx, cfg.Coordinator, cfg.Invite, log, hc)
}

// The refresher keeps the ACL current. Each fetch also tells the
// coordinator where the jumpoint listens and what it carried: the
// coordinator shows a jumpoint online while it fetches within three
// periods. A failed fetch keeps the last ACL (a coordinator restart must
// not cut the peers behind the jumpoint off) and is retried at the next
// period.

// minEarlyRefresh spaces refreshes that unknown callers trigger, so
// strangers knocking cannot make the jumpoint hammer the coordinator.
const minEarlyRefresh = 2 * time.Second

// unknownWait bounds how long a tunnel of an unknown caller waits for an
// early refresh before it is judged again: the caller may be a peer that
// enrolled through this jumpoint a moment ago, or a technician's new
// device. A stranger's tunnel is held that long and then refused.
const unknownWait = minEarlyRefresh + time.Second

// refreshLoop fetches the ACL every refreshEvery until ctx ends, and early
// (at most every minEarlyRefresh) when an unknown caller asked for a
// tunnel.
func (j *Jumpoint) refreshLoop(ctx context.Context) {
	defer j.wg.Done()
	t := time.NewTimer(j.refreshEvery())
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-j.stale:
			if wait := minEarlyRefresh - time.Since(last); wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}
		last = time.Now()
		if err := j.refresh(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			j.refreshFailures.Inc()
			j.log.Warn("jumpoint ACL refresh failed; keeping the last ACL", logError, err,
				logPeers, j.aclPeers(), logAge, j.aclAge().Round(time.Second))
		}
		t.Reset(j.refreshEvery())
	}
}

// refresh reports the addresses and counters, fetches the ACL, swaps it
// in and closes the connections of callers no longer in it.
func (j *Jumpoint) refresh(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	var addrs [][]byte
	for _, a := range j.reported() {
		addrs = append(addrs, a.Bytes())
	}
	tunnels, dropped, mark := j.tunnelLog.pending()
	req := &pb.Request{Body: &pb.Request_JumpointAcl{JumpointAcl: &pb.JumpointACLRequest{
		Addrs: addrs, PeerPort: j.linkPort, Stats: j.Stats(), Tunnels: tunnels, TunnelsDropped: dropped}}}
	// Through the members' lane first; every live coordinator's addresses
	// the answer carries are kept, so a jumpoint restarted while the one
	// it enrolled with is down reaches another, and when none it knows
	// answers it asks the relays its last ACL named (mesh/member).
	resp, err := j.member.Call(ctx, req)
	if err != nil {
		return fmt.Errorf("fetching the jumpoint ACL from %s: %w", j.site.ID, err)
	}
	// The coordinator answers only once it audited them (tunnellog.go).
	j.tunnelLog.done(dropped, mark)
	m := resp.GetJumpointAcl()
	if m == nil {
		return catalog.Errorf(catalog.CodeProtocol, "(the coordinator answered the jumpoint ACL request without an ACL)")
	}
	relays := siteRelays(m.GetSiteAddrs(), j.site.ID, j.host.ID())
	// Kept in the config file: asked where the site is when no
	// coordinator answers, after a restart as well (mesh/member).
	if _, err := j.member.LearnRelays(m.GetSiteAddrs()); err != nil {
		j.log.Warn("keeping the relays' addresses", logError, err)
	}
	siteAddrs, warnings := resolveSiteAddrs(ctx, m.GetSiteAddrs())
	m.SiteAddrs = siteAddrs
	acl, more, err := NewACL(m, j.site.ID)
	for _, w := range append(warnings, more...) {
		j.log.Warn("jumpoint ACL: skipping an entry", logError, w)
	}
	if err != nil {
		return err
	}
	j.setRelays(relays)
	was := j.acl.Swap(acl)
	j.aclAt.Store(time.Now().UnixNano())
	j.signalSwap()
	j.protect(was, acl)
	j.evict(was, acl)
	j.endGrantTunnels(acl)
	if was == nil || was.Name != acl.Name {
		j.log.Info("jumpoint ACL", logName, acl.Name, logPeers, len(acl.Peers), "technicians", len(acl.Technicians))
	}
	return nil
}

// protect keeps the connection manager from closing the connections of
// the ACL's peers and technicians when the jumpoint is busy: a peer's
// connection carries its coordinator tunnel for as long as it runs.
func (j *Jumpoint) protect(was, now *ACL) {
	const tag = "jumpoint-member"
	cm := j.host.ConnManager()
	for _, set := range []map[peer.ID]struct{}{now.Peers, now.Technicians} {
		for p := range set {
			cm.Protect(p, tag)
		}
	}
	if was == nil {
		return
	}
	for _, set := range []map[peer.ID]struct{}{was.Peers, was.Technicians} {
		for p := range set {
			if !now.IsPeer(p) && !now.IsTechnician(p) {
				cm.Unprotect(p, tag)
			}
		}
	}
}

// evict closes every connection of callers that were in the ACL (was) and
// are not any more: a removed technician, a deleted peer. Their open
// tunnels end with the connection; without this they would last as long
// as their sessions. Strangers are left alone: every tunnel they ask for
// is refused with a clear permission_denied.
func (j *Jumpoint) evict(was, now *ACL) {
	if was == nil {
		return
	}
	left := func(p peer.ID) bool {
		return (was.IsPeer(p) || was.IsTechnician(p)) && !now.IsPeer(p) && !now.IsTechnician(p)
	}
	for _, p := range j.host.Network().Peers() {
		if left(p) {
			j.log.Info("closing the connections of a caller outside the site", logRemote, p)
			_ = j.host.Network().ClosePeer(p)
		}
	}
	// A peer link is no libp2p connection: its tunnels are ended here.
	if j.tunnels != nil {
		if n := j.tunnels.CloseWhere(func(p peer.ID, _ *pb.TunnelOpen) bool { return left(p) }); n > 0 {
			j.log.Info("ended the tunnels of callers outside the site", "tunnels", n)
		}
	}
}

// endGrantTunnels ends the technicians' tunnels to peers the new ACL no
// longer has (deleted, or moved to other jumpoints): evict closes only
// the connections of callers who left, and a technician who stays would
// keep a session to a deleted peer for as long as it lasts. Agentless
// tunnels end, the same way, when the allow list no longer holds their
// target.
func (j *Jumpoint) endGrantTunnels(now *ACL) {
	if j.tunnels == nil { // the first fetch, before serving
		return
	}
	n := j.tunnels.CloseWhere(func(_ peer.ID, open *pb.TunnelOpen) bool {
		if open.GetGrant() == nil {
			return false
		}
		body, err := grant.Parse(open.GetGrant())
		if err != nil {
			return true
		}
		if len(body.GetPeer()) == 0 { // an agentless grant: its target must still be listed
			t, ok := canonical(open.GetTarget())
			return !ok || !now.Allow.Allows(netip.MustParseAddrPort(t))
		}
		p, err := peer.IDFromBytes(body.GetPeer())
		return err != nil || !now.IsPeer(p)
	})
	if n > 0 {
		j.log.Info("ended tunnels to peers no longer behind the jumpoint", "tunnels", n)
	}
}

// refreshEvery is Config.Refresh, else the coordinator's period, else
// DefaultRefresh.
func (j *Jumpoint) refreshEvery() time.Duration {
	if j.cfg.Refresh > 0 {
		return j.cfg.Refresh
	}
	if a := j.acl.Load(); a != nil && a.Refresh > 0 {
		return a.Refresh
	}
	return DefaultRefresh
}

// aclAge is the time since the last successful fetch.
func (j *Jumpoint) aclAge() time.Duration {
	at := j.aclAt.Load()
	if at == 0 {
		return time.Duration(1<<63 - 1)
	}
	return time.Since(time.Unix(0, at))
}

// awaitRefresh asks the refresher to fetch the ACL now and waits, at most
// unknownWait, until a new one is in place. It returns at once when the
// jumpoint is closing.
func (j *Jumpoint) awaitRefresh() {
	j.swapMu.Lock()
	swapped := j.swapped
	j.swapMu.Unlock()
	select {
	case j.stale <- struct{}{}:
	default:
	}
	t := time.NewTimer(unknownWait)
	defer t.Stop()
	select {
	case <-swapped:
	case <-t.C:
	case <-j.ctx.Done():
	}
}

// signalSwap wakes the tunnels waiting in awaitRefresh.
func (j *Jumpoint) signalSwap() {
	j.swapMu.Lock()
	close(j.swapped)
	j.swapped = make(chan struct{})
	j.swapMu.Unlock()
}

// reportTunnels sends the agentless tunnels not reported yet (a closing
// jumpoint's last ones) with one ACL request, best effort, within a
// short timeout; the answer's ACL is not used.
func (j *Jumpoint) reportTunnels() {
	if j.host == nil || j.tunnelLog.len() == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), finalReportTimeout)
	defer cancel()
	tunnels, dropped, mark := j.tunnelLog.pending()
	_, err := j.member.Call(ctx, &pb.Request{Body: &pb.Request_JumpointAcl{JumpointAcl: &pb.JumpointACLRequest{
		Stats: j.Stats(), Tunnels: tunnels, TunnelsDropped: dropped}}})
	if err != nil {
		j.log.Warn("reporting the last agentless tunnels to the coordinator", logError, err, "tunnels", len(tunnels))
		return
	}
	j.tunnelLog.done(dropped, mark)
}

// finalReportTimeout bounds reportTunnels, which Close waits for.
const finalReportTimeout = 3 * time.Second
