package coordinator

import (
	"fmt"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Administrative changes. Every change to users, roles, invites, jump
// groups, policies, settings, installers and peers passes through
// adminChanged once it is committed: it is the one place that writes the
// change to the audit log (kind "admin": who, what, before → after) and
// the one place to hook what must follow a change (a revocation push when
// a user is removed or a peer's policy changes).

// AuditAdmin is the kind of an administrative change's audit event.
const AuditAdmin = "admin"

// Actions of admin audit events (AuditEvent.action).
const (
	ActionUserInvite          = "user.invite"
	ActionUserRemove          = "user.remove"
	ActionUserRole            = "user.role"
	ActionGroupCreate         = "group.create"
	ActionGroupAdd            = "group.add"
	ActionGroupRemove         = "group.remove"
	ActionGroupDelete         = "group.delete"
	ActionJumpPolicyCreate    = "jump-policy.create"
	ActionJumpPolicyUpdate    = "jump-policy.update"
	ActionJumpPolicyDelete    = "jump-policy.delete"
	ActionSessionPolicyCreate = "session-policy.create"
	ActionSessionPolicyUpdate = "session-policy.update"
	ActionSessionPolicyDelete = "session-policy.delete"
	ActionSettingsSet         = "settings.set"
	ActionInstallerCreate     = "installer.create"
	ActionInstallerExtend     = "installer.extend"
	ActionInstallerDelete     = "installer.delete"
	ActionPeerSet             = "peer.set"
	ActionPeerRemove          = "peer.remove"
)

// adminChange is one committed administrative change.
type adminChange struct {
	Action string
	// Target names what changed: a user, group, policy, installer ID,
	// "settings", or a peer's name.
	Target string
	// Peer is the peer changed, for peer.* actions.
	Peer peer.ID
	// Change says what changed, before → after where that is cheap.
	Change string
}

// adminChanged records c's committed change. The change stands even when
// its event cannot be written (the store refused a write just after
// accepting one); that failure is logged at error level.
func (s *Service) adminChanged(c *caller, ch adminChange) {
	e := &pb.AuditEvent{Kind: AuditAdmin, User: c.name(), Technician: []byte(c.peer), Action: ch.Action, Target: ch.Target,
		Detail: ch.Change}
	if ch.Peer != "" {
		e.Peer, e.PeerName = []byte(ch.Peer), ch.Target
	}
	s.log.Info("administrative change", "action", ch.Action, "target", ch.Target, "change", ch.Change, "by", c.name())
	_ = s.audit(e)
}

// changeText is "field: before → after" for each field whose value differs.
func changeText(fields ...[3]string) string {
	var parts []string
	for _, f := range fields {
		if f[1] != f[2] {
			parts = append(parts, fmt.Sprintf("%s: %s → %s", f[0], quoteOrNone(f[1]), quoteOrNone(f[2])))
		}
	}
	return strings.Join(parts, "; ")
}

func quoteOrNone(v string) string {
	if v == "" {
		return "(none)"
	}
	return fmt.Sprintf("%q", v)
}

// recordText is a one-line text form of a record (a policy, settings).
func recordText(m proto.Message) string {
	if m == nil || !m.ProtoReflect().IsValid() {
		return "(none)"
	}
	b, _ := prototext.MarshalOptions{}.Marshal(m)
	if len(b) == 0 {
		return "{}"
	}
	return "{" + strings.Join(strings.Fields(string(b)), " ") + "}"
}

// recordChange is "before → after" of a whole record.
func recordChange(before, after proto.Message) string {
	return recordText(before) + " → " + recordText(after)
}

func unixText(sec int64) string { return time.Unix(sec, 0).UTC().Format(time.RFC3339) }

// memberRoleOf is user's role in g, as text.
func memberRoleOf(g *pb.Group, user string) string {
	for _, m := range g.GetMembers() {
		if m.GetUser() == user {
			return strings.ToLower(strings.TrimPrefix(m.GetRole().String(), "MEMBER_ROLE_"))
		}
	}
	return "(none)"
}
