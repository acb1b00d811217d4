package relay

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/member"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// The relay's side of the control protocol: it enrolls as a site member
// (mesh/member) with the role relay, then fetches the ACL.

// The relay's identity in its data directory: its key (mode 0600), which
// is its libp2p peer ID and so the member the coordinator knows, and its
// member config (site, coordinator addresses, relay user).
const (
	KeyFile    = "relay.key"
	ConfigFile = "relay.json"
)

// oldFiles are the names a data directory had when the relay enrolled as a
// console; migrate renames them.
var oldFiles = []string{"technician.key", "console.json"}

// files are the relay's member files in dir.
func files(dir string) member.Files {
	return member.Files{Dir: dir, Key: KeyFile, Config: ConfigFile}
}

// migrate renames a data directory made by an older release (which kept a
// console's technician.key and console.json) to the relay's own names, so
// the relay keeps its identity and enrollment.
func migrate(dir string, log *slog.Logger) error {
	moved, err := files(dir).Migrate(member.Files{Dir: dir, Key: oldFiles[0], Config: oldFiles[1]})
	if err != nil {
		return fmt.Errorf("relay data directory %s: %w", dir, err)
	}
	if moved {
		log.Info("relay data directory renamed to the relay's own file names", logData, dir, logFiles, KeyFile+", "+ConfigFile)
	}
	return nil
}

// enroll returns the relay's member client on the host hc builds,
// enrolling with the invite on the first run (member.Daemon.Serve) after
// renaming an older release's files.
func enroll(ctx context.Context, cfg *Config, log *slog.Logger, hc mesh.HostConfig) (*member.Client, error) {
	if err := migrate(cfg.DataDir, log); err != nil {
		return nil, err
	}
	d := member.Daemon{Files: files(cfg.DataDir), Role: pb.Role_ROLE_RELAY, Party: "relay"}
	return d.Serve(ctx, cfg.Coordinator, cfg.Invite, log, hc)
}

// The refresher keeps the ACL current. Each fetch also tells the
// coordinator where the relay listens: the coordinator hands out only
// relays that fetched within three periods, so the fetch is the relay's
// heartbeat too. A failed fetch keeps the last ACL (a coordinator restart
// must not stop sessions) and is retried at the next period.

// minEarlyRefresh spaces refreshes that unknown peers trigger, so
// strangers knocking cannot make the relay hammer the coordinator.
const minEarlyRefresh = 2 * time.Second

// refreshLoop fetches the ACL every refreshEvery until ctx ends, and early
// (at most every minEarlyRefresh) when an unknown peer asked to reserve.
func (r *Relay) refreshLoop(ctx context.Context) {
	defer r.wg.Done()
	t := time.NewTimer(r.refreshEvery())
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.acl.stale:
			if wait := minEarlyRefresh - time.Since(last); wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}
		last = time.Now()
		if err := r.refresh(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			r.refreshFailures.Inc()
			r.log.Warn("relay ACL refresh failed; keeping the last ACL", logError, err,
				logMembers, r.acl.Len(), logAge, r.aclAge().Round(time.Second))
		}
		t.Reset(r.refreshEvery())
	}
}

// refresh fetches the member list, swaps it in and closes the connections
// of peers no longer in it.
func (r *Relay) refresh(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	var addrs [][]byte
	for _, a := range r.advertised() {
		addrs = append(addrs, a.Bytes())
	}
	// Through the members' lane first; every live coordinator's addresses
	// the answer carries are kept, so a relay restarted while the one it
	// enrolled with is down reaches another (mesh/member).
	resp, err := r.member.Call(ctx, &pb.Request{Body: &pb.Request_RelayAcl{RelayAcl: &pb.RelayACLRequest{Addrs: addrs}}})
	if err != nil {
		return fmt.Errorf("fetching the relay ACL from %s: %w", r.site.ID, err)
	}
	list := resp.GetRelayAcl()
	if list == nil {
		return catalog.Errorf(catalog.CodeProtocol, "(the coordinator answered the relay ACL request without an ACL)")
	}
	members := make([]peer.ID, 0, len(list.GetMembers()))
	for _, b := range list.GetMembers() {
		id, err := peer.IDFromBytes(b)
		if err != nil {
			r.log.Warn("relay ACL: skipping a member that is not a peer ID", logError, err)
			continue
		}
		members = append(members, id)
	}
	// The coordinator always lists itself; an empty list is a fault, and
	// applying it would cut every session.
	if len(members) == 0 {
		return catalog.Errorf(catalog.CodeProtocol, "(the coordinator sent an empty relay ACL)")
	}
	was := *r.acl.members.Load()
	r.acl.SetMembers(members)
	r.aclAt.Store(time.Now().UnixNano())
	if s := list.GetRefreshSeconds(); s > 0 {
		r.serverEvery.Store(int64(time.Duration(s) * time.Second))
	}
	r.evict(was)
	if r.splice != nil {
		r.splice.evict()
	}
	return nil
}

// evict closes every connection of peers that were members (in was) and
// are not any more. The relay service
// only asks the ACL when a reservation or circuit starts; without this, a
// removed technician or a deleted peer would keep its reservation (up to
// the reservation TTL) and its open circuits (forever, since circuits are
// unlimited). Strangers are left alone: the ACL refuses whatever they ask,
// with a clear PERMISSION_DENIED rather than a closed connection.
func (r *Relay) evict(was map[peer.ID]struct{}) {
	for _, p := range r.host.Network().Peers() {
		if _, member := was[p]; member && !r.acl.IsMember(p) {
			r.log.Info("closing the connections of a peer outside the site", logPeer, p)
			_ = r.host.Network().ClosePeer(p)
		}
	}
}

// refreshEvery is Config.Refresh, else the coordinator's period, else
// DefaultRefresh.
func (r *Relay) refreshEvery() time.Duration {
	if r.cfg.Refresh > 0 {
		return r.cfg.Refresh
	}
	if d := time.Duration(r.serverEvery.Load()); d > 0 {
		return d
	}
	return DefaultRefresh
}

// aclAge is the time since the last successful fetch.
func (r *Relay) aclAge() time.Duration {
	at := r.aclAt.Load()
	if at == 0 {
		return time.Duration(1<<63 - 1)
	}
	return time.Since(time.Unix(0, at))
}
