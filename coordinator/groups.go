package coordinator

import (
	"fmt"
	"slices"
	"strings"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/words"
)

func (s *Service) groupCreate(c *caller, r *pb.GroupCreateRequest) (*pb.Response, error) {
	if err := c.requireAdmin(); err != nil {
		return nil, err
	}
	if err := ValidateName("jump group code name", r.GetCode()); err != nil {
		return nil, err
	}
	if len(r.GetDisplayName()) > 128 {
		return nil, catalog.Errorf(catalog.CodeInvalidArgument, "A jump group's display name is at most 128 characters (got %d).", len(r.GetDisplayName()))
	}
	g := &pb.Group{Code: r.GetCode(), DisplayName: r.GetDisplayName(), CreatedUnix: s.clock.Now().Unix(), CreatedBy: c.name()}
	err := s.update(func(tx *Tx) error {
		old, err := tx.Group(g.Code)
		if err != nil {
			return err
		}
		if old != nil {
			return catalog.Errorf(catalog.CodeGroupExists, "(jumpgroup:%s)", g.Code)
		}
		for _, m := range r.GetMembers() {
			if err := setMember(tx, g, m.GetUser(), m.GetRole()); err != nil {
				return err
			}
		}
		return tx.PutGroup(g)
	})
	if err != nil {
		return nil, err
	}
	s.adminChanged(c, adminChange{Action: ActionGroupCreate, Target: words.SharedGroupPrefix + g.Code, Change: recordText(g)})
	return &pb.Response{Body: &pb.Response_Group{Group: g}}, nil
}

// setMember adds user to g with role, or changes the role of a member.
func setMember(tx *Tx, g *pb.Group, user string, role pb.MemberRole) error {
	u, err := tx.User(user)
	if err != nil {
		return err
	}
	if u == nil {
		return catalog.Errorf(catalog.CodeUserNotFound, "(%s)", user)
	}
	if role == pb.MemberRole_MEMBER_ROLE_UNSPECIFIED {
		role = pb.MemberRole_MEMBER_ROLE_MEMBER
	}
	if _, ok := pb.MemberRole_name[int32(role)]; !ok {
		return catalog.Errorf(catalog.CodeInvalidArgument, "(member role %d)", role)
	}
	for _, m := range g.Members {
		if m.GetUser() == user {
			m.Role = role
			return nil
		}
	}
	g.Members = append(g.Members, &pb.GroupMember{User: user, Role: role})
	slices.SortFunc(g.Members, func(a, b *pb.GroupMember) int { return strings.Compare(a.GetUser(), b.GetUser()) })
	return nil
}

func (s *Service) groupList(c *caller) (*pb.Response, error) {
	var out []*pb.Group
	err := s.view(func(tx *Tx) error {
		groups, err := tx.Groups()
		for _, g := range groups {
			if c.isAdmin() || memberRole(g, c.name()) != pb.MemberRole_MEMBER_ROLE_UNSPECIFIED {
				out = append(out, g)
			}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return &pb.Response{Body: &pb.Response_Groups{Groups: &pb.GroupList{Groups: out}}}, nil
}

func (s *Service) groupShow(c *caller, code string) (*pb.Response, error) {
	var g *pb.Group
	err := s.view(func(tx *Tx) (err error) {
		g, err = loadGroup(tx, code)
		return err
	})
	if err != nil {
		return nil, err
	}
	if !c.isAdmin() && memberRole(g, c.name()) == pb.MemberRole_MEMBER_ROLE_UNSPECIFIED {
		return nil, catalog.Errorf(catalog.CodePermissionDenied, "(you are not a member of jumpgroup:%s)", code)
	}
	return &pb.Response{Body: &pb.Response_Group{Group: g}}, nil
}

func loadGroup(tx *Tx, code string) (*pb.Group, error) {
	g, err := tx.Group(code)
	if err != nil {
		return nil, err
	}
	if g == nil {
		return nil, catalog.Errorf(catalog.CodeGroupNotFound, "(jumpgroup:%s)", code)
	}
	return g, nil
}

func (s *Service) groupAdd(c *caller, r *pb.GroupMemberRequest) (*pb.Response, error) {
	if err := c.requireAdmin(); err != nil {
		return nil, err
	}
	var g *pb.Group
	err := s.update(func(tx *Tx) (err error) {
		if g, err = loadGroup(tx, r.GetCode()); err != nil {
			return err
		}
		if err := setMember(tx, g, r.GetUser(), r.GetRole()); err != nil {
			return err
		}
		return tx.PutGroup(g)
	})
	if err != nil {
		return nil, err
	}
	s.adminChanged(c, adminChange{Action: ActionGroupAdd, Target: words.SharedGroupPrefix + r.GetCode(),
		Change: fmt.Sprintf("member %s as %s", r.GetUser(), memberRoleOf(g, r.GetUser()))})
	return &pb.Response{Body: &pb.Response_Group{Group: g}}, nil
}

func (s *Service) groupRemove(c *caller, r *pb.GroupMemberRequest) (*pb.Response, error) {
	if err := c.requireAdmin(); err != nil {
		return nil, err
	}
	var g *pb.Group
	var keys [][]byte
	err := s.update(func(tx *Tx) (err error) {
		if g, err = loadGroup(tx, r.GetCode()); err != nil {
			return err
		}
		if u, err := tx.User(r.GetUser()); err == nil && u != nil {
			keys = u.GetPeerIds()
		}
		n := len(g.Members)
		g.Members = slices.DeleteFunc(g.Members, func(m *pb.GroupMember) bool { return m.GetUser() == r.GetUser() })
		if len(g.Members) == n {
			return catalog.Errorf(catalog.CodeMemberNotFound, "(%s in jumpgroup:%s)", r.GetUser(), r.GetCode())
		}
		return tx.PutGroup(g)
	})
	if err != nil {
		return nil, err
	}
	s.adminChanged(c, adminChange{Action: ActionGroupRemove, Target: words.SharedGroupPrefix + r.GetCode(), Change: "member " + r.GetUser()})
	s.revokeTechniciansOn(s.onlinePeersWhere(inGroup(words.SharedGroupPrefix+r.GetCode())), keys, r.GetUser()+" removed from jumpgroup:"+r.GetCode())
	return &pb.Response{Body: &pb.Response_Group{Group: g}}, nil
}

func (s *Service) groupDelete(c *caller, code string) (*pb.Response, error) {
	if err := c.requireAdmin(); err != nil {
		return nil, err
	}
	err := s.update(func(tx *Tx) error {
		if _, err := loadGroup(tx, code); err != nil {
			return err
		}
		if err := refuseIfUsedByInstallers(tx, s.clock.Now(), "jumpgroup:"+code, func(d *pb.InstallerDefaults) bool {
			return d.GetGroup() == words.SharedGroupPrefix+code
		}); err != nil {
			return err
		}
		return tx.DeleteGroup(code)
	})
	if err != nil {
		return nil, err
	}
	s.adminChanged(c, adminChange{Action: ActionGroupDelete, Target: words.SharedGroupPrefix + code})
	return ok(), nil
}

func removeFromGroups(tx *Tx, user string) error {
	groups, err := tx.Groups()
	if err != nil {
		return err
	}
	for _, g := range groups {
		n := len(g.Members)
		g.Members = slices.DeleteFunc(g.Members, func(m *pb.GroupMember) bool { return m.GetUser() == user })
		if len(g.Members) != n {
			if err := tx.PutGroup(g); err != nil {
				return err
			}
		}
	}
	return nil
}
