package coordinator

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Jumpoints are enrolled like relays (role jumpoint, by invite) and
// authenticate the same way; they may only refresh the jumpoint ACL, which
// also reports where they listen on the networks they serve and what they
// carried. Peers installed with a key naming jumpoints talk to the site
// only through them: the key carries the jumpoints' IDs and addresses, the
// peer's record their IDs, and each jumpoint's ACL lists the peers whose
// record names it. Consoles get the jumpoints of such a peer with its grant.

// JumpointRefresh is how often jumpoints fetch their ACL; one that has not
// refreshed for three periods is shown offline.
const JumpointRefresh = 30 * time.Second

// Bounds on what a jumpoint's report and an installer key carry: the
// addresses go into keys, and a key must stay well inside
// installerkey.MaxKeyLength.
const (
	MaxJumpointAddrs = 16
	MaxKeyJumpoints  = 8
)

// jumpointBook remembers what each jumpoint last reported. It lives in
// memory, like the relays' book: after a restart a jumpoint is known again
// at its next refresh, and until then its peers' grants carry the
// addresses their installer key named.
type jumpointBook struct {
	mu   sync.Mutex
	seen map[peer.ID]jumpointSeen
}

type jumpointSeen struct {
	addrs    []ma.Multiaddr
	peerPort uint32 // its peer-link port on the IPs of addrs; 0: none
	stats    *pb.JumpointStats
	at       time.Time
}

func (b *jumpointBook) report(id peer.ID, seen jumpointSeen) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.seen == nil {
		b.seen = map[peer.ID]jumpointSeen{}
	}
	b.seen[id] = seen
}

// get returns what id last reported; ok is false if it never did.
func (b *jumpointBook) get(id peer.ID) (jumpointSeen, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	j, ok := b.seen[id]
	return j, ok
}

func (j jumpointSeen) online(now time.Time) bool {
	return !j.at.IsZero() && now.Sub(j.at) <= 3*JumpointRefresh
}

func (s *Service) dispatchJumpoint(c *caller, req *pb.Request) (*pb.Response, error) {
	switch b := req.GetBody().(type) {
	case *pb.Request_JumpointAcl:
		return s.jumpointACL(c, b.JumpointAcl)
	case *pb.Request_Whoami:
		return s.userShow(c, c.name())
	}
	return nil, catalog.Errorf(catalog.CodePermissionDenied, "(a jumpoint may only fetch the jumpoint ACL)")
}

// jumpointACL records the jumpoint's report and returns whom it serves:
// the peers whose record names it (not deleted), the technicians' and
// administrators' console keys (they still need a grant for a peer), and
// the site's addresses, the only places its peers may reach through it.
func (s *Service) jumpointACL(c *caller, r *pb.JumpointACLRequest) (*pb.Response, error) {
	addrs := mesh.DecodeAddrs(r.GetAddrs())
	if len(addrs) > MaxJumpointAddrs {
		s.log.Warn("jumpoint reported more addresses than keys carry; keeping the first", logUser, c.name(),
			logRemote, c.peer, "reported", len(addrs), "kept", MaxJumpointAddrs)
		addrs = addrs[:MaxJumpointAddrs]
	}
	port := r.GetPeerPort()
	if port > 65535 {
		port = 0
	}
	if seen, ok := s.jumpointBook.get(c.peer); ok && len(addrs) == 0 {
		addrs, port = seen.addrs, seen.peerPort // a closing jumpoint's last tunnel report carries none
	}
	s.jumpointBook.report(c.peer, jumpointSeen{addrs: addrs, peerPort: port, stats: proto.CloneOf(r.GetStats()), at: s.clock.Now()})
	if err := s.auditTunnels(c, r); err != nil {
		return nil, err
	}
	acl := &pb.JumpointACL{Name: c.name(), RefreshSeconds: int64(JumpointRefresh / time.Second),
		Allow: c.user.GetJumpoint().GetAllow()}
	for _, p := range s.peers.snapshot() {
		if p.rec.GetDeletedUnix() == 0 && namesJumpoint(p.rec, c.peer) {
			acl.Peers = append(acl.Peers, p.rec.GetId())
		}
	}
	err := s.view(func(tx *Tx) error {
		users, err := tx.Users()
		for _, u := range users {
			if u.GetRole() == pb.Role_ROLE_TECHNICIAN || u.GetRole() == pb.Role_ROLE_ADMIN {
				acl.Technicians = append(acl.Technicians, u.GetPeerIds()...)
			}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	acl.SiteAddrs = encodeAddrs(s.siteAddrs())
	return &pb.Response{Body: &pb.Response_JumpointAcl{JumpointAcl: acl}}, nil
}

// siteAddrs are every live coordinator's addresses and the live relays',
// each with /p2p/.
func (s *Service) siteAddrs() []ma.Multiaddr {
	own, _ := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: s.siteID, Addrs: s.coordinatorAddrs()})
	return append(own, s.relayAddrs()...)
}

func namesJumpoint(rec *pb.Peer, id peer.ID) bool {
	return slices.ContainsFunc(rec.GetJumpoints(), func(b []byte) bool { return peer.ID(b) == id })
}

// jumpointList shows every jumpoint of the site (administrators and
// technicians): one row per enrolled key, or one without an ID for a
// jumpoint invited but not enrolled yet.
func (s *Service) jumpointList() (*pb.Response, error) {
	var users []*pb.User
	err := s.view(func(tx *Tx) error {
		all, err := tx.Users()
		for _, u := range all {
			if u.GetRole() == pb.Role_ROLE_JUMPOINT {
				users = append(users, u)
			}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	type count struct{ total, online uint32 }
	counts := map[peer.ID]*count{}
	for _, u := range users {
		for _, id := range u.GetPeerIds() {
			counts[peer.ID(id)] = &count{}
		}
	}
	for _, p := range s.peers.snapshot() {
		if p.rec.GetDeletedUnix() != 0 {
			continue
		}
		for _, j := range p.rec.GetJumpoints() {
			if n := counts[peer.ID(j)]; n != nil {
				n.total++
				if p.online {
					n.online++
				}
			}
		}
	}
	now := s.clock.Now()
	list := &pb.JumpointList{}
	for _, u := range users {
		if len(u.GetPeerIds()) == 0 {
			list.Jumpoints = append(list.Jumpoints, &pb.JumpointView{Name: u.GetName(),
				Allow: formatAllow(u.GetJumpoint()), Groups: u.GetJumpoint().GetGroups()})
		}
		for _, raw := range u.GetPeerIds() {
			id := peer.ID(raw)
			v := &pb.JumpointView{Name: u.GetName(), Id: raw, LastSeenUnix: u.GetLastSeenUnix(),
				PeersTotal: counts[id].total, PeersOnline: counts[id].online,
				Allow: formatAllow(u.GetJumpoint()), Groups: u.GetJumpoint().GetGroups()}
			if seen, ok := s.jumpointBook.get(id); ok {
				v.Addrs, v.LastSeenUnix, v.Online, v.Stats = encodeAddrs(seen.addrs), seen.at.Unix(), seen.online(now), seen.stats
			}
			list.Jumpoints = append(list.Jumpoints, v)
		}
	}
	slices.SortFunc(list.Jumpoints, func(a, b *pb.JumpointView) int {
		return cmp.Or(cmp.Compare(a.GetName(), b.GetName()), cmp.Compare(string(a.GetId()), string(b.GetId())))
	})
	return &pb.Response{Body: &pb.Response_Jumpoints{Jumpoints: list}}, nil
}

// resolveJumpoints turns installer create's jumpoint names (or peer IDs)
// into references for the key: every enrolled key of a jumpoint named by
// name, with the addresses it last reported. A name that is not a
// jumpoint, or a jumpoint that never reported where it listens, is refused.
func (s *Service) resolveJumpoints(tx *Tx, names []string) ([]*pb.JumpointRef, error) {
	var refs []*pb.JumpointRef
	add := func(name string, id peer.ID) bool {
		seen, ok := s.jumpointBook.get(id)
		if !ok || len(seen.addrs) == 0 {
			return false
		}
		if !slices.ContainsFunc(refs, func(r *pb.JumpointRef) bool { return peer.ID(r.GetId()) == id }) {
			refs = append(refs, &pb.JumpointRef{Id: []byte(id), Name: name, Addrs: encodeAddrs(seen.addrs), PeerPort: seen.peerPort})
		}
		return true
	}
	for _, n := range names {
		u, ids, err := jumpointUser(tx, n)
		if err != nil {
			return nil, err
		}
		reported := false
		for _, id := range ids {
			reported = add(u.GetName(), id) || reported
		}
		if !reported {
			return nil, catalog.Errorf(catalog.CodeInvalidArgument,
				"Jumpoint %s has not reported its addresses to the coordinator (is `jumpmesh jumpoint run` running? It reports within %s of starting).",
				n, JumpointRefresh)
		}
	}
	if len(refs) > MaxKeyJumpoints {
		return nil, catalog.Errorf(catalog.CodeInvalidArgument, "An installer names at most %d jumpoints (got %d).", MaxKeyJumpoints, len(refs))
	}
	return refs, nil
}

// jumpointUser finds the jumpoint named n (its name, or the peer ID of
// one of its keys) and the keys to use: all of them for a name, the one
// given for a peer ID.
func jumpointUser(tx *Tx, n string) (*pb.User, []peer.ID, error) {
	var u *pb.User
	var ids []peer.ID
	if id, err := peer.Decode(n); err == nil {
		name, err := tx.UserByKey(id)
		if err != nil {
			return nil, nil, err
		}
		if name != "" {
			if u, err = tx.User(name); err != nil {
				return nil, nil, err
			}
		}
		ids = []peer.ID{id}
	} else {
		if u, err = tx.User(n); err != nil {
			return nil, nil, err
		}
		for _, raw := range u.GetPeerIds() {
			ids = append(ids, peer.ID(raw))
		}
	}
	if u == nil || u.GetRole() != pb.Role_ROLE_JUMPOINT {
		return nil, nil, catalog.Errorf(catalog.CodeInvalidArgument, "No jumpoint %q at this site (see `jumpmesh jumpoint list`).", n)
	}
	if len(ids) == 0 {
		return nil, nil, catalog.Errorf(catalog.CodeInvalidArgument, "Jumpoint %s has not enrolled yet: run `jumpmesh jumpoint run` with its invite first.", n)
	}
	return u, ids, nil
}

// peerJumpoints are the jumpoints a peer talks through, for consoles: the
// names and addresses the coordinator knows now, or, for a jumpoint that
// has not reported since the coordinator started, what the peer's
// installer key said.
func (s *Service) peerJumpoints(rec *pb.Peer) []*pb.JumpointRef {
	if len(rec.GetJumpoints()) == 0 {
		return nil
	}
	out := make([]*pb.JumpointRef, 0, len(rec.GetJumpoints()))
	err := s.view(func(tx *Tx) error {
		in, err := tx.Installer(rec.GetInstallerId())
		if err != nil {
			return err
		}
		fromKey := in.GetBody().GetJumpoints()
		for _, raw := range rec.GetJumpoints() {
			id := peer.ID(raw)
			ref := &pb.JumpointRef{Id: raw}
			if i := slices.IndexFunc(fromKey, func(r *pb.JumpointRef) bool { return peer.ID(r.GetId()) == id }); i >= 0 {
				ref.Name, ref.Addrs = fromKey[i].GetName(), fromKey[i].GetAddrs()
			}
			if seen, ok := s.jumpointBook.get(id); ok && len(seen.addrs) > 0 {
				ref.Addrs = encodeAddrs(seen.addrs)
			}
			name, err := tx.UserByKey(id) // its name now, if it is still a member
			if err != nil {
				return err
			}
			if name != "" {
				ref.Name = name
			}
			out = append(out, ref)
		}
		return nil
	})
	if err != nil {
		// Best effort: the IDs alone still tell the console to go through a jumpoint.
		s.log.Warn("reading a peer's jumpoints", logPeer, peer.ID(rec.GetId()), logError, err)
		out = out[:0]
		for _, raw := range rec.GetJumpoints() {
			out = append(out, &pb.JumpointRef{Id: raw})
		}
	}
	return out
}
