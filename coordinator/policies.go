package coordinator

import (
	"sort"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Jump policies and session policies are stored and served here; they are
// enforced when jumps are granted.

func (s *Service) jumpPolicyPut(c *caller, p *pb.JumpPolicy, create bool) (*pb.Response, error) {
	if err := c.requireAdmin(); err != nil {
		return nil, err
	}
	if err := ValidateJumpPolicy(p); err != nil {
		return nil, err
	}
	var old *pb.JumpPolicy
	err := s.update(func(tx *Tx) (err error) {
		old, err = tx.JumpPolicy(p.GetName())
		if err != nil {
			return err
		}
		if err := checkPut("jump policy", p.GetName(), old != nil, create); err != nil {
			return err
		}
		return tx.PutJumpPolicy(p)
	})
	if err != nil {
		return nil, err
	}
	s.adminChanged(c, adminChange{Action: putAction(create, ActionJumpPolicyCreate, ActionJumpPolicyUpdate), Target: p.GetName(), Change: recordChange(old, p)})
	if old != nil {
		s.CheckJumpWindows(s.clock.Now()) // a window the change closed is revoked now
	}
	return &pb.Response{Body: &pb.Response_JumpPolicy{JumpPolicy: p}}, nil
}

// checkPut refuses creating what exists and updating what does not.
func checkPut(kind, name string, exists, create bool) error {
	if create && exists {
		return catalog.Errorf(catalog.CodePolicyExists, "(%s %s)", kind, name)
	}
	if !create && !exists {
		return catalog.Errorf(catalog.CodePolicyNotFound, "(%s %s)", kind, name)
	}
	return nil
}

func (s *Service) jumpPolicyList() (*pb.Response, error) {
	var out []*pb.JumpPolicy
	err := s.view(func(tx *Tx) (err error) {
		out, err = tx.JumpPolicies()
		return err
	})
	if err != nil {
		return nil, err
	}
	return &pb.Response{Body: &pb.Response_JumpPolicies{JumpPolicies: &pb.JumpPolicyList{Policies: out}}}, nil
}

func (s *Service) jumpPolicyShow(name string) (*pb.Response, error) {
	p, err := showPolicy(s, jumpPolicies, name)
	if err != nil {
		return nil, err
	}
	return &pb.Response{Body: &pb.Response_JumpPolicy{JumpPolicy: p}}, nil
}

func (s *Service) jumpPolicyDelete(c *caller, name string) (*pb.Response, error) {
	return deletePolicy(s, c, jumpPolicies, name)
}

func (s *Service) sessionPolicyPut(c *caller, p *pb.SessionPolicy, create bool) (*pb.Response, error) {
	if err := c.requireAdmin(); err != nil {
		return nil, err
	}
	if err := ValidateSessionPolicy(p); err != nil {
		return nil, err
	}
	var old *pb.SessionPolicy
	err := s.update(func(tx *Tx) (err error) {
		old, err = tx.SessionPolicy(p.GetName())
		if err != nil {
			return err
		}
		if err := checkPut("session policy", p.GetName(), old != nil, create); err != nil {
			return err
		}
		return tx.PutSessionPolicy(p)
	})
	if err != nil {
		return nil, err
	}
	s.adminChanged(c, adminChange{Action: putAction(create, ActionSessionPolicyCreate, ActionSessionPolicyUpdate), Target: p.GetName(), Change: recordChange(old, p)})
	if old != nil && !proto.Equal(old, p) {
		s.revokePeers(s.onlinePeersWhere(usesSessionPolicy(p.GetName())), "session policy "+p.GetName()+" changed")
	}
	return &pb.Response{Body: &pb.Response_SessionPolicy{SessionPolicy: p}}, nil
}

func (s *Service) sessionPolicyList() (*pb.Response, error) {
	var out []*pb.SessionPolicy
	err := s.view(func(tx *Tx) (err error) {
		out, err = tx.SessionPolicies()
		return err
	})
	if err != nil {
		return nil, err
	}
	return &pb.Response{Body: &pb.Response_SessionPolicies{SessionPolicies: &pb.SessionPolicyList{Policies: out}}}, nil
}

func (s *Service) sessionPolicyShow(name string) (*pb.Response, error) {
	p, err := showPolicy(s, sessionPolicies, name)
	if err != nil {
		return nil, err
	}
	return &pb.Response{Body: &pb.Response_SessionPolicy{SessionPolicy: p}}, nil
}

func (s *Service) sessionPolicyDelete(c *caller, name string) (*pb.Response, error) {
	return deletePolicy(s, c, sessionPolicies, name)
}

// policyKind is how one kind of policy is stored and where it is used:
// show and delete are the same for both kinds but for these.
type policyKind[P proto.Message] struct {
	kind    string // "jump policy"
	get     func(*Tx, string) (P, error)
	del     func(*Tx, string) error
	uses    func(name string) func(*pb.InstallerDefaults) bool
	deleted string // the audit action of a delete
}

var jumpPolicies = policyKind[*pb.JumpPolicy]{
	kind: "jump policy", get: (*Tx).JumpPolicy, del: (*Tx).DeleteJumpPolicy, deleted: ActionJumpPolicyDelete,
	uses: func(name string) func(*pb.InstallerDefaults) bool {
		return func(d *pb.InstallerDefaults) bool { return d.GetJumpPolicy() == name }
	},
}

var sessionPolicies = policyKind[*pb.SessionPolicy]{
	kind: "session policy", get: (*Tx).SessionPolicy, del: (*Tx).DeleteSessionPolicy, deleted: ActionSessionPolicyDelete,
	uses: func(name string) func(*pb.InstallerDefaults) bool {
		return func(d *pb.InstallerDefaults) bool {
			return d.GetSessionPolicyPresent() == name || d.GetSessionPolicyNotPresent() == name
		}
	},
}

// showPolicy reads one policy; a missing one is policy_not_found.
func showPolicy[P proto.Message](s *Service, k policyKind[P], name string) (P, error) {
	var p P
	err := s.view(func(tx *Tx) (err error) {
		p, err = k.get(tx, name)
		return err
	})
	if err == nil && !p.ProtoReflect().IsValid() { // a nil *pb.X: not stored
		err = catalog.Errorf(catalog.CodePolicyNotFound, "(%s %s)", k.kind, name)
	}
	return p, err
}

// deletePolicy deletes one policy (admins only), refused while a peer or a
// live installer uses it.
func deletePolicy[P proto.Message](s *Service, c *caller, k policyKind[P], name string) (*pb.Response, error) {
	if err := c.requireAdmin(); err != nil {
		return nil, err
	}
	err := s.update(func(tx *Tx) error {
		p, err := k.get(tx, name)
		if err != nil {
			return err
		}
		if !p.ProtoReflect().IsValid() {
			return catalog.Errorf(catalog.CodePolicyNotFound, "(%s %s)", k.kind, name)
		}
		if err := s.refuseIfUsed(tx, k.kind+" "+name, k.uses(name)); err != nil {
			return err
		}
		return k.del(tx, name)
	})
	if err != nil {
		return nil, err
	}
	s.adminChanged(c, adminChange{Action: k.deleted, Target: name})
	return ok(), nil
}

func putAction(create bool, created, updated string) string {
	if create {
		return created
	}
	return updated
}

// refuseIfUsed fails with CodeInUse when an enrolled peer's settings (any
// peer the site holds a record of, deleted or uninstalled ones included)
// or a live installer's defaults match uses, saying how many of each.
// Peers are read from the registry: a peer set that races the delete can
// still leave a peer naming a missing policy, and such a peer allows no
// jumps (policy_missing), so the race fails closed.
func (s *Service) refuseIfUsed(tx *Tx, what string, uses func(*pb.InstallerDefaults) bool) error {
	var peers []string
	for _, p := range s.peers.snapshot() {
		if uses(p.rec.GetSettings()) {
			peers = append(peers, orID(p.rec))
		}
	}
	installers, err := liveInstallersUsing(tx, s.clock.Now(), uses)
	if err != nil || len(peers)+len(installers) == 0 {
		return err
	}
	sort.Strings(peers)
	return catalog.Errorf(catalog.CodeInUse, "(%s is used by %d peer(s)%s and %d live installer(s)%s; set those peers' policies with `jumpmesh set` or remove them, and delete those installers, first)",
		what, len(peers), listed(peers), len(installers), listed(installers))
}

func orID(rec *pb.Peer) string {
	if n := rec.GetSettings().GetName(); n != "" {
		return n
	}
	return peer.ID(rec.GetId()).String()
}

// listed is ": a, b, c" (at most ten, then "…"), or "" for none.
func listed(names []string) string {
	if len(names) == 0 {
		return ""
	}
	if len(names) > 10 {
		names = append(names[:10:10], "…")
	}
	return ": " + strings.Join(names, ", ")
}

// liveInstallersUsing lists the live (not revoked, not expired) installers
// whose defaults match uses, sorted.
func liveInstallersUsing(tx *Tx, now time.Time, uses func(*pb.InstallerDefaults) bool) ([]string, error) {
	installers, err := tx.Installers()
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, in := range installers {
		if installerLive(in, now) && uses(in.GetBody().GetDefaults()) {
			ids = append(ids, in.GetId())
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// refuseIfUsedByInstallers fails with CodeInUse when a live installer's
// defaults match uses, naming those installers.
func refuseIfUsedByInstallers(tx *Tx, now time.Time, what string, uses func(*pb.InstallerDefaults) bool) error {
	ids, err := liveInstallersUsing(tx, now, uses)
	if err != nil || len(ids) == 0 {
		return err
	}
	return catalog.Errorf(catalog.CodeInUse, "(%s is used by installer %s; delete those installers first)", what, strings.Join(ids, ", "))
}

func (s *Service) handleSettingsShow() (*pb.Response, error) {
	var st *pb.Settings
	err := s.view(func(tx *Tx) (err error) {
		st, err = tx.Settings()
		return err
	})
	if err != nil {
		return nil, err
	}
	return &pb.Response{Body: &pb.Response_Settings{Settings: st}}, nil
}

func (s *Service) handleSettingsSet(c *caller, r *pb.SettingsSetRequest) (*pb.Response, error) {
	if err := c.requireAdmin(); err != nil {
		return nil, err
	}
	if len(r.GetValues()) == 0 {
		return nil, catalog.Errorf(catalog.CodeInvalidArgument, "Nothing to set; give key=value pairs.")
	}
	var cur, next *pb.Settings
	// Held from the write to the push: on etcd the watch brings this
	// write back (followSettings), and must find it pushed already.
	s.settingsPush.Lock()
	defer s.settingsPush.Unlock()
	err := s.update(func(tx *Tx) (err error) {
		cur, err = tx.Settings()
		if err != nil {
			return err
		}
		next, err = ApplySettings(proto.CloneOf(cur), r.GetValues())
		if err != nil {
			return err
		}
		return tx.PutSettings(next)
	})
	if err != nil {
		return nil, err
	}
	s.pushedSettings = s.reloadSettings() // from the store, so concurrent sets cannot leave an older value cached
	s.adminChanged(c, adminChange{Action: ActionSettingsSet, Target: "settings", Change: recordChange(cur, next)})
	told := s.pushSettings() // sent after this reply, by each peer's send queue
	return &pb.Response{Body: &pb.Response_Settings{Settings: next}, PeersTold: uint32(told)}, nil
}
