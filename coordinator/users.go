package coordinator

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/words"
)

// Invite validity bounds.
const (
	DefaultInviteValidity = 24 * time.Hour
	MinInviteValidity     = time.Minute
	MaxInviteValidity     = 30 * 24 * time.Hour
)

// newInviteCode returns a random one-time code (120 bits) as the user sees
// it, in dash-separated groups of four, and the hash under which it is stored.
func newInviteCode() (string, []byte) {
	var raw [15]byte
	if _, err := rand.Read(raw[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	s := strings.ToLower(base32.StdEncoding.EncodeToString(raw[:]))
	var groups []string
	for i := 0; i < len(s); i += 4 {
		groups = append(groups, s[i:i+4])
	}
	code := strings.Join(groups, "-")
	return code, hashInviteCode(code)
}

// hashInviteCode normalises what a user typed (case, dashes, spaces) and
// hashes it; only hashes are stored, so a copy of the store leaks no codes.
func hashInviteCode(code string) []byte {
	norm := strings.Map(func(r rune) rune {
		if r == '-' || r == ' ' {
			return -1
		}
		return r
	}, strings.ToLower(strings.TrimSpace(code)))
	h := sha256.Sum256([]byte("jumpmesh invite\n" + norm))
	return h[:]
}

// bootstrapAdmin creates the first administrator and its invite.
func bootstrapAdmin(st *Store, name string, validFor time.Duration, now time.Time) (string, time.Time, error) {
	if err := ValidateName("user name", name); err != nil {
		return "", time.Time{}, err
	}
	code, hash := newInviteCode()
	expires := now.Add(validFor)
	err := st.Update(func(tx *Tx) error {
		u := &pb.User{Name: name, Role: pb.Role_ROLE_ADMIN, CreatedUnix: now.Unix(), CreatedBy: "coordinator init"}
		if err := tx.PutUser(u); err != nil {
			return err
		}
		return tx.PutInvite(&pb.Invite{CodeHash: hash, User: name, Role: pb.Role_ROLE_ADMIN, ExpiresUnix: expires.Unix(), CreatedBy: "coordinator init"})
	})
	return code, expires, err
}

func (s *Service) userInvite(c *caller, r *pb.UserInviteRequest) (*pb.Response, error) {
	if err := c.requireAdmin(); err != nil {
		return nil, err
	}
	if err := ValidateName("user name", r.GetName()); err != nil {
		return nil, err
	}
	validFor := time.Duration(r.GetValidForSeconds()) * time.Second
	if validFor == 0 {
		validFor = DefaultInviteValidity
	}
	if validFor < MinInviteValidity || validFor > MaxInviteValidity {
		return nil, catalog.Errorf(catalog.CodeOutOfRange, "An invite is valid for 1m to 720h (30 days); got %s.", validFor)
	}
	now := s.clock.Now()
	code, hash := newInviteCode()
	var user *pb.User
	err := s.update(func(tx *Tx) error {
		u, err := tx.User(r.GetName())
		if err != nil {
			return err
		}
		if u == nil {
			role := r.GetRole()
			if role == pb.Role_ROLE_UNSPECIFIED {
				role = pb.Role_ROLE_TECHNICIAN
			}
			u = &pb.User{Name: r.GetName(), Role: role, CreatedUnix: now.Unix(), CreatedBy: c.name()}
			if err := tx.PutUser(u); err != nil {
				return err
			}
		} else if r.GetRole() != pb.Role_ROLE_UNSPECIFIED && r.GetRole() != u.GetRole() {
			// An invite for an existing user adds a device; changing a role
			// is its own, audited, command.
			return catalog.Errorf(catalog.CodeUserExists, "%s is already a %s; use `jumpmesh user role` to change the role, or invite without --role to add a device.", u.GetName(), words.RoleName(u.GetRole()))
		}
		user = u
		return tx.PutInvite(&pb.Invite{CodeHash: hash, User: u.GetName(), Role: u.GetRole(), ExpiresUnix: now.Add(validFor).Unix(), CreatedBy: c.name()})
	})
	if err != nil {
		return nil, err
	}
	s.adminChanged(c, adminChange{Action: ActionUserInvite, Target: r.GetName(),
		Change: fmt.Sprintf("invite for a %s, valid until %s", words.RoleName(user.GetRole()), now.Add(validFor).UTC().Format(time.RFC3339))})
	return &pb.Response{Body: &pb.Response_Invite{Invite: &pb.UserInviteResponse{Code: code, ExpiresUnix: now.Add(validFor).Unix(), User: user}}}, nil
}

// login consumes an invite and binds the remote's key to its user.
func (s *Service) login(remote peer.ID, r *pb.LoginRequest) (*pb.Response, error) {
	hash := hashInviteCode(r.GetCode())
	now := s.clock.Now()
	var user *pb.User
	err := s.update(func(tx *Tx) error {
		inv, err := tx.Invite(hash)
		if err != nil {
			return err
		}
		if inv == nil {
			return catalog.NewError(catalog.CodeInviteInvalid)
		}
		if !now.Before(time.Unix(inv.GetExpiresUnix(), 0)) {
			return catalog.Errorf(catalog.CodeInviteExpired, "(expired at %s)", time.Unix(inv.GetExpiresUnix(), 0).UTC().Format(time.RFC3339))
		}
		bound, err := tx.UserByKey(remote)
		if err != nil {
			return err
		}
		if bound != "" && bound != inv.GetUser() {
			return catalog.Errorf(catalog.CodeKeyAlreadyBound, "(bound to %s)", bound)
		}
		u, err := tx.User(inv.GetUser())
		if err != nil {
			return err
		}
		if u == nil {
			return catalog.Errorf(catalog.CodeInviteInvalid, "(its user %s was removed)", inv.GetUser())
		}
		if !slices.ContainsFunc(u.GetPeerIds(), func(b []byte) bool { return peer.ID(b) == remote }) {
			u.PeerIds = append(u.PeerIds, []byte(remote))
		}
		u.LastSeenUnix = now.Unix()
		if err := tx.PutUser(u); err != nil {
			return err
		}
		if err := tx.BindKey(remote, u.GetName()); err != nil {
			return err
		}
		user = u
		return tx.DeleteInvite(hash)
	})
	if err != nil {
		return nil, err
	}
	s.log.Info("technician logged in", logUser, user.GetName(), logRemote, remote)
	return &pb.Response{Body: &pb.Response_Login{Login: &pb.LoginResponse{
		User: user, SiteId: []byte(s.siteID), SiteAddrs: encodeAddrs(s.coordinatorAddrs()),
	}}}, nil
}

func (s *Service) userList(c *caller) (*pb.Response, error) {
	if err := c.requireAdmin(); err != nil {
		return nil, err
	}
	var users []*pb.User
	err := s.view(func(tx *Tx) (err error) {
		users, err = tx.Users()
		return err
	})
	if err != nil {
		return nil, err
	}
	return &pb.Response{Body: &pb.Response_Users{Users: &pb.UserList{Users: users}}}, nil
}

func (s *Service) userShow(c *caller, name string) (*pb.Response, error) {
	if name != c.name() {
		if err := c.requireAdmin(); err != nil {
			return nil, err
		}
	}
	var detail *pb.UserDetail
	err := s.view(func(tx *Tx) error {
		u, err := tx.User(name)
		if err != nil {
			return err
		}
		if u == nil {
			return catalog.Errorf(catalog.CodeUserNotFound, "(%s)", name)
		}
		groups, err := tx.Groups()
		if err != nil {
			return err
		}
		detail = &pb.UserDetail{User: u, Groups: groupsOf(groups, name), VisiblePersonalLists: VisiblePersonalLists(name, groups)}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &pb.Response{Body: &pb.Response_User{User: detail}}, nil
}

func (s *Service) userRemove(c *caller, name string) (*pb.Response, error) {
	if err := c.requireAdmin(); err != nil {
		return nil, err
	}
	var keys [][]byte
	err := s.update(func(tx *Tx) error {
		u, err := tx.User(name)
		if err != nil {
			return err
		}
		if u == nil {
			return catalog.Errorf(catalog.CodeUserNotFound, "(%s)", name)
		}
		keys = u.GetPeerIds()
		if u.GetRole() == pb.Role_ROLE_ADMIN {
			if err := requireAnotherAdmin(tx, name); err != nil {
				return err
			}
		}
		for _, id := range u.GetPeerIds() {
			if err := tx.UnbindKey(peer.ID(id)); err != nil {
				return err
			}
		}
		if err := removeFromGroups(tx, name); err != nil {
			return err
		}
		if err := deleteInvitesOf(tx, name); err != nil {
			return err
		}
		return tx.DeleteUser(name)
	})
	if err != nil {
		return nil, err
	}
	s.adminChanged(c, adminChange{Action: ActionUserRemove, Target: name})
	s.revokeTechnicians(keys, "user "+name+" removed")
	return ok(), nil
}

func (s *Service) userRole(c *caller, r *pb.UserRoleRequest) (*pb.Response, error) {
	if err := c.requireAdmin(); err != nil {
		return nil, err
	}
	if r.GetRole() != pb.Role_ROLE_ADMIN && r.GetRole() != pb.Role_ROLE_TECHNICIAN {
		return nil, catalog.Errorf(catalog.CodeInvalidArgument, "A role is admin or technician (relays and jumpoints are enrolled with `jumpmesh relay invite` and `jumpmesh jumpoint invite`).")
	}
	var user *pb.User
	var before pb.Role
	err := s.update(func(tx *Tx) error {
		u, err := tx.User(r.GetName())
		if err != nil {
			return err
		}
		if u == nil {
			return catalog.Errorf(catalog.CodeUserNotFound, "(%s)", r.GetName())
		}
		before = u.GetRole()
		if u.GetRole() == pb.Role_ROLE_RELAY || u.GetRole() == pb.Role_ROLE_JUMPOINT {
			// A relay's or jumpoint's key must never become a person's account.
			role := words.RoleName(u.GetRole())
			return catalog.Errorf(catalog.CodeInvalidArgument, "%s is a %s; %ss keep their role (remove it and invite a user instead).", u.GetName(), role, role)
		}
		if u.GetRole() == pb.Role_ROLE_ADMIN && r.GetRole() != pb.Role_ROLE_ADMIN {
			if err := requireAnotherAdmin(tx, u.GetName()); err != nil {
				return err
			}
		}
		u.Role = r.GetRole()
		user = u
		return tx.PutUser(u)
	})
	if err != nil {
		return nil, err
	}
	s.adminChanged(c, adminChange{Action: ActionUserRole, Target: r.GetName(), Change: changeText([3]string{"role", words.RoleName(before), words.RoleName(r.GetRole())})})
	return s.userShow(c, user.GetName())
}

func requireAnotherAdmin(tx *Tx, except string) error {
	users, err := tx.Users()
	if err != nil {
		return err
	}
	for _, u := range users {
		if u.GetName() != except && u.GetRole() == pb.Role_ROLE_ADMIN {
			return nil
		}
	}
	return catalog.Errorf(catalog.CodeLastAdmin, "(%s is the only one)", except)
}

func deleteInvitesOf(tx *Tx, name string) error {
	invites, err := tx.Invites()
	if err != nil {
		return err
	}
	for _, inv := range invites {
		if inv.GetUser() == name {
			if err := tx.DeleteInvite(inv.GetCodeHash()); err != nil {
				return err
			}
		}
	}
	return nil
}
