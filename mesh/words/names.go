package words

import (
	"strings"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// The words for enum values on the CLI, in --json output and in docs.

// RoleName is "admin", "technician", "relay" or "jumpoint".
func RoleName(r pb.Role) string {
	switch r {
	case pb.Role_ROLE_ADMIN:
		return "admin"
	case pb.Role_ROLE_TECHNICIAN:
		return "technician"
	case pb.Role_ROLE_RELAY:
		return "relay"
	case pb.Role_ROLE_JUMPOINT:
		return "jumpoint"
	}
	return "unknown"
}

// ParseRole reads a role name.
func ParseRole(s string) (pb.Role, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "admin", "administrator":
		return pb.Role_ROLE_ADMIN, nil
	case "technician", "tech":
		return pb.Role_ROLE_TECHNICIAN, nil
	case "relay":
		return pb.Role_ROLE_RELAY, nil
	case "jumpoint":
		return pb.Role_ROLE_JUMPOINT, nil
	}
	return 0, catalog.Errorf(catalog.CodeInvalidArgument, "role %q: a role is admin, technician, relay or jumpoint.", s)
}

// MemberRoleName is "member", "team-lead" or "team-manager".
func MemberRoleName(r pb.MemberRole) string {
	switch r {
	case pb.MemberRole_MEMBER_ROLE_MEMBER:
		return "member"
	case pb.MemberRole_MEMBER_ROLE_TEAM_LEAD:
		return "team-lead"
	case pb.MemberRole_MEMBER_ROLE_TEAM_MANAGER:
		return "team-manager"
	}
	return "unknown"
}

// ParseMemberRole reads a jump group member role.
func ParseMemberRole(s string) (pb.MemberRole, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "member":
		return pb.MemberRole_MEMBER_ROLE_MEMBER, nil
	case "team-lead", "lead":
		return pb.MemberRole_MEMBER_ROLE_TEAM_LEAD, nil
	case "team-manager", "manager":
		return pb.MemberRole_MEMBER_ROLE_TEAM_MANAGER, nil
	}
	return 0, catalog.Errorf(catalog.CodeInvalidArgument, "member role %q: a member role is member, team-lead or team-manager.", s)
}

// ConnectionTypeName is "active" or "passive".
func ConnectionTypeName(t pb.ConnectionType) string {
	switch t {
	case pb.ConnectionType_CONNECTION_TYPE_ACTIVE:
		return "active"
	case pb.ConnectionType_CONNECTION_TYPE_PASSIVE:
		return "passive"
	}
	return "default"
}

// ParseConnectionType reads a connection type.
func ParseConnectionType(s string) (pb.ConnectionType, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "active":
		return pb.ConnectionType_CONNECTION_TYPE_ACTIVE, nil
	case "passive":
		return pb.ConnectionType_CONNECTION_TYPE_PASSIVE, nil
	}
	return 0, catalog.Errorf(catalog.CodeInvalidArgument, "connection type %q: a connection type is active or passive.", s)
}

// Jump group references: personal lists and shared groups.
const (
	PersonalGroupPrefix = "user:"
	SharedGroupPrefix   = "jumpgroup:"
)

// ParseGroupRef splits "user:NAME" or "jumpgroup:CODE".
func ParseGroupRef(ref string) (personal bool, name string, err error) {
	switch {
	case strings.HasPrefix(ref, PersonalGroupPrefix):
		personal, name = true, strings.TrimPrefix(ref, PersonalGroupPrefix)
	case strings.HasPrefix(ref, SharedGroupPrefix):
		name = strings.TrimPrefix(ref, SharedGroupPrefix)
	default:
		return false, "", catalog.Errorf(catalog.CodeInvalidArgument, "jump group %q: write user:<name> for a personal list or jumpgroup:<code-name> for a shared group.", ref)
	}
	if name == "" {
		return false, "", catalog.Errorf(catalog.CodeInvalidArgument, "jump group %q has no name after the colon.", ref)
	}
	return personal, name, nil
}
