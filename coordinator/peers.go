package coordinator

import (
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/control"
	"github.com/jumpmesh/jumpmesh/mesh/installerkey"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/words"
)

// What technicians see of peers: ls, show, set, rm.

// visibility is the set of jump groups a caller may see peers of; nil
// means everything (administrators).
type visibility map[string]bool

func (s *Service) visibilityOf(c *caller) (visibility, error) {
	if c.isAdmin() {
		return nil, nil
	}
	var groups []*pb.Group
	if err := s.view(func(tx *Tx) (err error) { groups, err = tx.Groups(); return err }); err != nil {
		return nil, err
	}
	v := visibility{}
	for _, u := range VisiblePersonalLists(c.name(), groups) {
		v[words.PersonalGroupPrefix+u] = true
	}
	for _, g := range groupsOf(groups, c.name()) {
		v[words.SharedGroupPrefix+g] = true
	}
	return v, nil
}

func (v visibility) allows(group string) bool { return v == nil || v[group] }

// searchPeers returns the first limit peers (all when limit <= 0), in sort
// order, of those visible to c that match query, and how many matched.
// With shared, the views' records share their parts with the registry's
// (searchRequest.shared): the caller must only read and encode them.
func (s *Service) searchPeers(c *caller, query string, includeDeleted bool, limit int, shared bool) ([]*pb.PeerView, int, error) {
	req, err := s.searchRequest(c, query, includeDeleted, limit)
	if err != nil {
		return nil, 0, err
	}
	req.shared = shared
	views, total := s.peers.find(req)
	return views, total, nil
}

// searchRequest is c's search for query as the registry runs it.
func (s *Service) searchRequest(c *caller, query string, includeDeleted bool, limit int) (searchRequest, error) {
	now := s.clock.Now()
	q, err := ParseQuery(query, now)
	if err != nil {
		return searchRequest{}, err
	}
	vis, err := s.visibilityOf(c)
	if err != nil {
		return searchRequest{}, err
	}
	var allow func(group string) bool
	if vis != nil { // an administrator's search skips the group checks
		allow = vis.allows
	}
	return searchRequest{query: q, allow: allow, settings: s.settings(), now: now,
		includeDeleted: includeDeleted, limit: limit}, nil
}

// Peer list sizes. A reply must also fit a control message: it stops
// short of the limit when the peers' views would come near
// mesh.MaxControlMessage (a view takes a few hundred bytes, more with long
// comments), and Total tells the console how many matched.
const (
	DefaultPeerListLimit = 1000
	MaxPeerListLimit     = 5000
	peerListBudget       = control.MaxMessage - 64<<10
)

func (s *Service) peerList(c *caller, r *pb.PeerListRequest) (*pb.Response, error) {
	limit := int(r.GetLimit())
	switch {
	case limit == 0:
		limit = DefaultPeerListLimit
	case limit > MaxPeerListLimit:
		return nil, catalog.Errorf(catalog.CodeInvalidArgument, "A peer list holds at most %d peers (asked for %d): narrow the query.", MaxPeerListLimit, limit)
	}
	switch r.GetView() {
	case pb.PeerListView_PEER_LIST_VIEW_FULL, pb.PeerListView_PEER_LIST_VIEW_TABLE:
	default:
		return nil, catalog.Errorf(catalog.CodeInvalidArgument, "A peer list's view is full or table (asked for %d).", r.GetView())
	}
	req, err := s.searchRequest(c, r.GetQuery(), r.GetIncludeDeleted(), limit)
	if err != nil {
		return nil, err
	}
	req.view = r.GetView()
	// The views go out as the bytes the registry keeps (searchreply.go).
	raw, _, total := s.peers.findEncoded(req, peerListBudget)
	return &pb.Response{Body: &pb.Response_Peers{Peers: encodedPeerList(raw, total)}}, nil
}

// fitPeers is the first views, at most limit and at most what fits a reply.
func fitPeers(views []*pb.PeerView, limit int) []*pb.PeerView {
	n, size := 0, 0
	for n < min(limit, len(views)) {
		size += proto.Size(views[n]) + 8 // the field's tag and length
		if size > peerListBudget {
			break
		}
		n++
	}
	return views[:n]
}

// resolvePeer finds the one peer ref names: a peer ID, a unique name, or a
// unique search result. Ambiguity lists the candidates. On a store shared
// with other coordinators, "not found" is said only once this
// coordinator's registry has caught up with the peer records the store
// held when it was asked (store_etcd_catchup.go): a peer enrolled or
// renamed through another coordinator a moment ago is found.
func (s *Service) resolvePeer(c *caller, ref string) (*pb.PeerView, error) {
	v, err := s.resolvePeerHere(c, ref)
	if catalog.CodeOf(err) != catalog.CodePeerNotFound || !s.store.shared() {
		return v, err
	}
	if cerr := s.store.catchUp(peersPrefix); cerr != nil {
		s.log.Debug("a peer lookup missed and the store's watch did not catch up", "ref", ref, logError, cerr)
		return v, err
	}
	return s.resolvePeerHere(c, ref)
}

// resolvePeerHere is resolvePeer on the registry as it stands.
func (s *Service) resolvePeerHere(c *caller, ref string) (*pb.PeerView, error) {
	ref = strings.TrimSpace(ref)
	if ref == "" {
		return nil, catalog.Errorf(catalog.CodeInvalidArgument, "No peer named; give a peer ID, a name or a search.")
	}
	vis, err := s.visibilityOf(c)
	if err != nil {
		return nil, err
	}
	if id, err := peer.Decode(ref); err == nil {
		if v := s.viewOf(id, vis); v != nil {
			return v, nil
		}
		return nil, catalog.Errorf(catalog.CodePeerNotFound, "(%s)", ref)
	}
	var byName []*pb.PeerView
	for _, p := range s.peers.snapshot() {
		if strings.EqualFold(p.rec.GetSettings().GetName(), ref) {
			if v := s.viewOf(peer.ID(p.rec.GetId()), vis); v != nil {
				byName = append(byName, v)
			}
		}
	}
	matches := byName
	if len(matches) == 0 {
		if matches, _, err = s.searchPeers(c, ref, false, 0, false); err != nil {
			return nil, err
		}
	}
	switch len(matches) {
	case 0:
		return nil, catalog.Errorf(catalog.CodePeerNotFound, "(nothing matches %q)", ref)
	case 1:
		return matches[0], nil
	}
	return nil, catalog.Errorf(catalog.CodePeerAmbiguous, "(%q matches %d peers: %s)", ref, len(matches), candidates(matches, 10))
}

// viewOf is the peer as c sees it, or nil if c may not see it or it is deleted.
func (s *Service) viewOf(id peer.ID, vis visibility) *pb.PeerView {
	rec, online := s.peers.get(id)
	if rec == nil || !vis.allows(rec.GetSettings().GetGroup()) {
		return nil
	}
	status := peerStatus(rec, online, time.Unix(rec.GetLastSeenUnix(), 0), s.settings(), s.clock.Now())
	if status == StatusDeleted {
		return nil
	}
	return &pb.PeerView{Peer: rec, Status: status}
}

func candidates(views []*pb.PeerView, n int) string {
	var parts []string
	for i, v := range views {
		if i == n {
			parts = append(parts, "…")
			break
		}
		parts = append(parts, v.GetPeer().GetSettings().GetName()+" ("+peer.ID(v.GetPeer().GetId()).String()+")")
	}
	return strings.Join(parts, ", ")
}

func (s *Service) peerShow(c *caller, r *pb.PeerRefRequest) (*pb.Response, error) {
	if len(r.GetRefs()) != 1 {
		return nil, catalog.Errorf(catalog.CodeInvalidArgument, "Show one peer at a time.")
	}
	v, err := s.resolvePeer(c, r.GetRefs()[0])
	if err != nil {
		return nil, err
	}
	v.Addrs = encodeAddrs(s.peerAddrs(c.peer, peer.ID(v.GetPeer().GetId())))
	v.PeerIp = s.peerIP(peer.ID(v.GetPeer().GetId()))
	v.Relays = encodeAddrs(s.relayAddrs())
	v.Jumpoints = s.peerJumpoints(v.GetPeer())
	return &pb.Response{Body: &pb.Response_Peer{Peer: v}}, nil
}

// policyFields are a peer's settings that only administrators change:
// they decide when and how the peer may be reached.
const policyFields = installerkey.FieldJumpPolicy | installerkey.FieldSessionPolicyPresent | installerkey.FieldSessionPolicyNotPresent

// peerSet edits a peer's settings. Moving it to another jump group needs
// the right to use both groups; its policies are administrators' alone.
func (s *Service) peerSet(c *caller, r *pb.PeerSetRequest) (*pb.Response, error) {
	v, err := s.resolvePeer(c, r.GetRef())
	if err != nil {
		return nil, err
	}
	fields := installerkey.Field(r.GetFields())
	if fields == 0 {
		return nil, catalog.Errorf(catalog.CodeInvalidArgument, "Nothing to change.")
	}
	if fields&policyFields != 0 && !c.isAdmin() {
		return nil, catalog.Errorf(catalog.CodePermissionDenied, "(a peer's jump and session policies are set by administrators; %s is a technician)", c.name())
	}
	before := proto.CloneOf(v.GetPeer().GetSettings())
	want := r.GetSettings()
	id := peer.ID(v.GetPeer().GetId())
	err = s.view(func(tx *Tx) error {
		probe := &pb.InstallerDefaults{Group: want.GetGroup(), JumpPolicy: want.GetJumpPolicy(),
			SessionPolicyPresent: want.GetSessionPolicyPresent(), SessionPolicyNotPresent: want.GetSessionPolicyNotPresent()}
		if fields&installerkey.FieldGroup != 0 {
			if err := checkGroupTarget(tx, c, probe.GetGroup(), "you may not move peers into"); err != nil {
				return err
			}
		}
		return checkPolicies(tx, probe)
	})
	if err != nil {
		return nil, err
	}
	// The offline limit is the installer's: a peer set leaves it.
	rec, err := s.peers.modify(id, func(rec *pb.Peer) error {
		return applyFields(rec.Settings, want, fields&^installerkey.FieldMaxOfflineMinutes)
	})
	if err != nil {
		return nil, err
	}
	if sess := s.peers.session(id); sess != nil {
		s.push(sess, nil) // its new settings
	}
	s.adminChanged(c, adminChange{Action: ActionPeerSet, Target: rec.GetSettings().GetName(), Peer: id, Change: settingsChange(before, rec.GetSettings())})
	if accessChanged(before, rec.GetSettings()) {
		s.revokePeers([]peer.ID{id}, "the peer's group or policies changed")
	}
	return s.peerShow(c, &pb.PeerRefRequest{Refs: []string{id.String()}})
}

// settingsChange is what a peer set changed, field by field.
func settingsChange(b, a *pb.InstallerDefaults) string {
	return changeText([3]string{"name", b.GetName(), a.GetName()}, [3]string{"group", b.GetGroup(), a.GetGroup()},
		[3]string{"tag", b.GetTag(), a.GetTag()}, [3]string{"comments", b.GetComments(), a.GetComments()},
		[3]string{"jump-policy", b.GetJumpPolicy(), a.GetJumpPolicy()},
		[3]string{"session-policy-present", b.GetSessionPolicyPresent(), a.GetSessionPolicyPresent()},
		[3]string{"session-policy-not-present", b.GetSessionPolicyNotPresent(), a.GetSessionPolicyNotPresent()})
}

// checkGroupTarget checks that group (a jump group or a personal list)
// exists and that c may put peers in it: installers made for it, peers
// moved into it. denied begins the detail of a refusal ("… <group>").
func checkGroupTarget(tx *Tx, c *caller, group, denied string) error {
	personal, name, err := words.ParseGroupRef(group)
	if err != nil {
		return err
	}
	groups, err := tx.Groups()
	if err != nil {
		return err
	}
	if personal {
		if u, err := tx.User(name); err != nil || u == nil {
			if err == nil {
				err = catalog.Errorf(catalog.CodeUserNotFound, "(personal list %s)", group)
			}
			return err
		}
	} else if !hasGroup(groups, name) {
		return catalog.Errorf(catalog.CodeGroupNotFound, "(%s)", group)
	}
	if !c.isAdmin() && !CanUseGroup(c.name(), personal, name, groups) {
		return catalog.Errorf(catalog.CodePermissionDenied, "(%s %s)", denied, group)
	}
	return nil
}

// applyFields copies the fields of want named in fields into d (a peer's
// settings: overrides at enrollment, a peer set) and checks the lengths.
func applyFields(d, want *pb.InstallerDefaults, fields installerkey.Field) error {
	set := func(f installerkey.Field, apply func()) {
		if fields&f != 0 {
			apply()
		}
	}
	set(installerkey.FieldGroup, func() { d.Group = want.GetGroup() })
	set(installerkey.FieldTag, func() { d.Tag = want.GetTag() })
	set(installerkey.FieldComments, func() { d.Comments = want.GetComments() })
	set(installerkey.FieldName, func() { d.Name = want.GetName() })
	set(installerkey.FieldJumpPolicy, func() { d.JumpPolicy = want.GetJumpPolicy() })
	set(installerkey.FieldSessionPolicyPresent, func() { d.SessionPolicyPresent = want.GetSessionPolicyPresent() })
	set(installerkey.FieldSessionPolicyNotPresent, func() { d.SessionPolicyNotPresent = want.GetSessionPolicyNotPresent() })
	set(installerkey.FieldMaxOfflineMinutes, func() { d.MaxOfflineMinutes, d.Ephemeral = want.GetMaxOfflineMinutes(), want.GetEphemeral() })
	for _, c := range []struct {
		field string
		v     string
		max   int
	}{{"name", d.GetName(), MaxPeerNameLength}, {"tag", d.GetTag(), MaxTagLength}, {"comments", d.GetComments(), MaxCommentsLength}} {
		if err := checkLength(c.field, c.v, c.max); err != nil {
			return err
		}
	}
	return nil
}

// peerRemove deletes peers: an online one is told to uninstall at once, an
// offline one at its next contact (its record waits as "deleted").
func (s *Service) peerRemove(c *caller, r *pb.PeerRefRequest) (*pb.Response, error) {
	if len(r.GetRefs()) == 0 {
		return nil, catalog.Errorf(catalog.CodeInvalidArgument, "No peer named.")
	}
	var ids []peer.ID
	for _, ref := range r.GetRefs() {
		v, err := s.resolvePeer(c, ref)
		if err != nil {
			return nil, err
		}
		ids = append(ids, peer.ID(v.GetPeer().GetId()))
	}
	now := s.clock.Now()
	for _, id := range slices.Compact(ids) {
		rec, _ := s.peers.get(id)
		if sess := s.peers.session(id); sess != nil && rec != nil {
			s.peers.bury(rec, c.name(), now) // its tombstone answers its next hellos
			s.pushUninstall(sess, "deleted by "+c.name())
		} else if rec.GetUninstalledUnix() != 0 {
			s.peers.forget(id) // already gone from its host: nothing to wait for
		} else if _, err := s.peers.modify(id, func(rec *pb.Peer) error {
			rec.DeletedUnix, rec.DeletedBy = now.Unix(), c.name()
			return nil
		}); err != nil {
			return nil, err
		}
		s.adminChanged(c, adminChange{Action: ActionPeerRemove, Target: rec.GetSettings().GetName(), Peer: id})
	}
	return ok(), nil
}
