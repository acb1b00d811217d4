package console

import (
	"context"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Typed wrappers over the control protocol, one per request.

func (c *Client) do(ctx context.Context, req *pb.Request) (*pb.Response, error) {
	return c.Call(ctx, req)
}

// WhoAmI returns the logged-in user.
func (c *Client) WhoAmI(ctx context.Context) (*pb.UserDetail, error) {
	r, err := c.do(ctx, &pb.Request{Body: &pb.Request_Whoami{Whoami: &pb.Empty{}}})
	return r.GetUser(), err
}

// InviteUser creates (or adds a device to) a user and returns the one-time code.
func (c *Client) InviteUser(ctx context.Context, name string, role pb.Role, validFor time.Duration) (*pb.UserInviteResponse, error) {
	r, err := c.do(ctx, &pb.Request{Body: &pb.Request_UserInvite{UserInvite: &pb.UserInviteRequest{
		Name: name, Role: role, ValidForSeconds: int64(validFor / time.Second)}}})
	return r.GetInvite(), err
}

func (c *Client) Users(ctx context.Context) ([]*pb.User, error) {
	r, err := c.do(ctx, &pb.Request{Body: &pb.Request_UserList{UserList: &pb.Empty{}}})
	return r.GetUsers().GetUsers(), err
}

func (c *Client) User(ctx context.Context, name string) (*pb.UserDetail, error) {
	r, err := c.do(ctx, &pb.Request{Body: &pb.Request_UserShow{UserShow: &pb.NameRequest{Name: name}}})
	return r.GetUser(), err
}

func (c *Client) RemoveUser(ctx context.Context, name string) error {
	_, err := c.do(ctx, &pb.Request{Body: &pb.Request_UserRemove{UserRemove: &pb.NameRequest{Name: name}}})
	return err
}

func (c *Client) SetRole(ctx context.Context, name string, role pb.Role) (*pb.UserDetail, error) {
	r, err := c.do(ctx, &pb.Request{Body: &pb.Request_UserRole{UserRole: &pb.UserRoleRequest{Name: name, Role: role}}})
	return r.GetUser(), err
}

func (c *Client) CreateGroup(ctx context.Context, code, displayName string, members []*pb.GroupMember) (*pb.Group, error) {
	r, err := c.do(ctx, &pb.Request{Body: &pb.Request_GroupCreate{GroupCreate: &pb.GroupCreateRequest{
		Code: code, DisplayName: displayName, Members: members}}})
	return r.GetGroup(), err
}

func (c *Client) Groups(ctx context.Context) ([]*pb.Group, error) {
	r, err := c.do(ctx, &pb.Request{Body: &pb.Request_GroupList{GroupList: &pb.Empty{}}})
	return r.GetGroups().GetGroups(), err
}

func (c *Client) Group(ctx context.Context, code string) (*pb.Group, error) {
	r, err := c.do(ctx, &pb.Request{Body: &pb.Request_GroupShow{GroupShow: &pb.NameRequest{Name: code}}})
	return r.GetGroup(), err
}

// AddMember adds user to the group, or changes its role there.
func (c *Client) AddMember(ctx context.Context, code, user string, role pb.MemberRole) (*pb.Group, error) {
	r, err := c.do(ctx, &pb.Request{Body: &pb.Request_GroupAdd{GroupAdd: &pb.GroupMemberRequest{Code: code, User: user, Role: role}}})
	return r.GetGroup(), err
}

func (c *Client) RemoveMember(ctx context.Context, code, user string) (*pb.Group, error) {
	r, err := c.do(ctx, &pb.Request{Body: &pb.Request_GroupRemove{GroupRemove: &pb.GroupMemberRequest{Code: code, User: user}}})
	return r.GetGroup(), err
}

func (c *Client) DeleteGroup(ctx context.Context, code string) error {
	_, err := c.do(ctx, &pb.Request{Body: &pb.Request_GroupDelete{GroupDelete: &pb.NameRequest{Name: code}}})
	return err
}

// PutJumpPolicy creates (create=true) or replaces a jump policy.
func (c *Client) PutJumpPolicy(ctx context.Context, p *pb.JumpPolicy, create bool) (*pb.JumpPolicy, error) {
	r, err := c.do(ctx, &pb.Request{Create: create, Body: &pb.Request_JumpPolicyPut{JumpPolicyPut: p}})
	return r.GetJumpPolicy(), err
}

func (c *Client) JumpPolicies(ctx context.Context) ([]*pb.JumpPolicy, error) {
	r, err := c.do(ctx, &pb.Request{Body: &pb.Request_JumpPolicyList{JumpPolicyList: &pb.Empty{}}})
	return r.GetJumpPolicies().GetPolicies(), err
}

func (c *Client) JumpPolicy(ctx context.Context, name string) (*pb.JumpPolicy, error) {
	r, err := c.do(ctx, &pb.Request{Body: &pb.Request_JumpPolicyShow{JumpPolicyShow: &pb.NameRequest{Name: name}}})
	return r.GetJumpPolicy(), err
}

func (c *Client) DeleteJumpPolicy(ctx context.Context, name string) error {
	_, err := c.do(ctx, &pb.Request{Body: &pb.Request_JumpPolicyDelete{JumpPolicyDelete: &pb.NameRequest{Name: name}}})
	return err
}

// PutSessionPolicy creates (create=true) or replaces a session policy.
func (c *Client) PutSessionPolicy(ctx context.Context, p *pb.SessionPolicy, create bool) (*pb.SessionPolicy, error) {
	r, err := c.do(ctx, &pb.Request{Create: create, Body: &pb.Request_SessionPolicyPut{SessionPolicyPut: p}})
	return r.GetSessionPolicy(), err
}

func (c *Client) SessionPolicies(ctx context.Context) ([]*pb.SessionPolicy, error) {
	r, err := c.do(ctx, &pb.Request{Body: &pb.Request_SessionPolicyList{SessionPolicyList: &pb.Empty{}}})
	return r.GetSessionPolicies().GetPolicies(), err
}

func (c *Client) SessionPolicy(ctx context.Context, name string) (*pb.SessionPolicy, error) {
	r, err := c.do(ctx, &pb.Request{Body: &pb.Request_SessionPolicyShow{SessionPolicyShow: &pb.NameRequest{Name: name}}})
	return r.GetSessionPolicy(), err
}

func (c *Client) DeleteSessionPolicy(ctx context.Context, name string) error {
	_, err := c.do(ctx, &pb.Request{Body: &pb.Request_SessionPolicyDelete{SessionPolicyDelete: &pb.NameRequest{Name: name}}})
	return err
}

func (c *Client) Settings(ctx context.Context) (*pb.Settings, error) {
	r, err := c.do(ctx, &pb.Request{Body: &pb.Request_SettingsShow{SettingsShow: &pb.Empty{}}})
	return r.GetSettings(), err
}

// SetSettings applies key=value settings all at once, or none of them.
func (c *Client) SetSettings(ctx context.Context, values map[string]string) (*pb.Settings, error) {
	r, err := c.SetSettingsTold(ctx, values)
	return r.Settings, err
}

// SettingsSet is what settings set answers.
type SettingsSet struct {
	Settings *pb.Settings
	// PeersTold is how many online peers the coordinator queued the new
	// settings to; they reach them after the answer.
	PeersTold int
}

// SetSettingsTold is SetSettings, also saying how many online peers will
// be told.
func (c *Client) SetSettingsTold(ctx context.Context, values map[string]string) (SettingsSet, error) {
	r, err := c.do(ctx, &pb.Request{Body: &pb.Request_SettingsSet{SettingsSet: &pb.SettingsSetRequest{Values: values}}})
	return SettingsSet{Settings: r.GetSettings(), PeersTold: int(r.GetPeersTold())}, err
}

func (c *Client) CreateInstaller(ctx context.Context, req *pb.InstallerCreateRequest) (*pb.Installer, error) {
	r, err := c.do(ctx, &pb.Request{Body: &pb.Request_InstallerCreate{InstallerCreate: req}})
	return r.GetInstaller(), err
}

func (c *Client) Installers(ctx context.Context, includeDeleted bool) ([]*pb.Installer, error) {
	r, err := c.do(ctx, &pb.Request{Body: &pb.Request_InstallerList{InstallerList: &pb.InstallerListRequest{IncludeRevoked: includeDeleted}}})
	return r.GetInstallers().GetInstallers(), err
}

func (c *Client) Installer(ctx context.Context, id string) (*pb.Installer, error) {
	r, err := c.do(ctx, &pb.Request{Body: &pb.Request_InstallerShow{InstallerShow: &pb.NameRequest{Name: id}}})
	return r.GetInstaller(), err
}

// ExtendInstaller re-signs the installer's key to be valid for validFor from now.
func (c *Client) ExtendInstaller(ctx context.Context, id string, validFor time.Duration) (*pb.Installer, error) {
	r, err := c.do(ctx, &pb.Request{Body: &pb.Request_InstallerExtend{InstallerExtend: &pb.InstallerExtendRequest{
		Id: id, ValidForSeconds: int64(validFor / time.Second)}}})
	return r.GetInstaller(), err
}

// DeleteInstaller revokes the installer: the coordinator refuses its key.
func (c *Client) DeleteInstaller(ctx context.Context, id string) error {
	_, err := c.do(ctx, &pb.Request{Body: &pb.Request_InstallerDelete{InstallerDelete: &pb.NameRequest{Name: id}}})
	return err
}

// CheckInstallerKey asks the coordinator whether it would accept key now.
func (c *Client) CheckInstallerKey(ctx context.Context, key string) (*pb.Installer, error) {
	r, err := c.do(ctx, &pb.Request{Body: &pb.Request_InstallerCheck{InstallerCheck: &pb.InstallerCheckRequest{Key: key}}})
	return r.GetInstaller(), err
}

// Peers lists the peers the user may see that match query (see `jumpmesh
// ls --help`), the first coordinator.DefaultPeerListLimit of them in sort
// order; PeerPage says how many matched.
func (c *Client) Peers(ctx context.Context, query string, includeDeleted bool) ([]*pb.PeerView, error) {
	views, _, err := c.PeerPage(ctx, query, includeDeleted, 0)
	return views, err
}

// PeerPage lists at most limit matching peers (0: the coordinator's
// default) and how many matched in all.
func (c *Client) PeerPage(ctx context.Context, query string, includeDeleted bool, limit int) ([]*pb.PeerView, int, error) {
	return c.PeerPageView(ctx, query, includeDeleted, limit, pb.PeerListView_PEER_LIST_VIEW_FULL)
}

// PeerPageView is PeerPage with only what view asks for of each record
// (PEER_LIST_VIEW_TABLE: what `jumpmesh ls` prints in its table).
func (c *Client) PeerPageView(ctx context.Context, query string, includeDeleted bool, limit int, view pb.PeerListView) ([]*pb.PeerView, int, error) {
	r, err := c.do(ctx, peerListRequest(query, includeDeleted, limit, view))
	return r.GetPeers().GetPeers(), int(r.GetPeers().GetTotal()), err
}

// peerListRequest is PeerPageView's request (Client's and Direct's).
func peerListRequest(query string, includeDeleted bool, limit int, view pb.PeerListView) *pb.Request {
	return &pb.Request{Body: &pb.Request_PeerList{PeerList: &pb.PeerListRequest{Query: query, IncludeDeleted: includeDeleted,
		Limit: uint32(limit), View: view}}}
}

// Peer resolves ref (peer ID, unique name, or unique search result).
func (c *Client) Peer(ctx context.Context, ref string) (*pb.PeerView, error) {
	r, err := c.do(ctx, &pb.Request{Body: &pb.Request_PeerShow{PeerShow: &pb.PeerRefRequest{Refs: []string{ref}}}})
	return r.GetPeer(), err
}

// SetPeer changes the settings named by fields (installerkey.Field bits).
func (c *Client) SetPeer(ctx context.Context, ref string, settings *pb.InstallerDefaults, fields uint32) (*pb.PeerView, error) {
	r, err := c.do(ctx, &pb.Request{Body: &pb.Request_PeerSet{PeerSet: &pb.PeerSetRequest{Ref: ref, Settings: settings, Fields: fields}}})
	return r.GetPeer(), err
}

// RemovePeers deletes peers; each uninstalls itself at its next contact.
func (c *Client) RemovePeers(ctx context.Context, refs ...string) error {
	_, err := c.do(ctx, &pb.Request{Body: &pb.Request_PeerRemove{PeerRemove: &pb.PeerRefRequest{Refs: refs}}})
	return err
}
