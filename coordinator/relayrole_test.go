package coordinator_test

import (
	"testing"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// TestRelayMayOnlyFetchTheACL: a relay's key is a site member, but the only
// control request it may make is the ACL fetch. A relay operator who takes
// the key and calls the coordinator like a console gets nothing else: no
// peer list, no grant, no audit, no administration.
func TestRelayMayOnlyFetchTheACL(t *testing.T) {
	h := newHarness(t)
	relay := h.user("relay-1", pb.Role_ROLE_RELAY)
	ctx := h.ctx()
	if _, err := relay.Call(ctx, &pb.Request{Body: &pb.Request_RelayAcl{RelayAcl: &pb.RelayACLRequest{}}}); err != nil {
		t.Fatalf("the relay's own ACL fetch: %v", err)
	}
	for name, req := range map[string]*pb.Request{
		"peer list":   {Body: &pb.Request_PeerList{PeerList: &pb.PeerListRequest{}}},
		"jump":        {Body: &pb.Request_Jump{Jump: &pb.JumpRequest{Ref: "web-01"}}},
		"audit":       {Body: &pb.Request_Audit{Audit: &pb.AuditRequest{}}},
		"user invite": {Body: &pb.Request_UserInvite{UserInvite: &pb.UserInviteRequest{Name: "mallory", Role: pb.Role_ROLE_ADMIN, ValidForSeconds: 3600}}},
		"settings":    {Body: &pb.Request_SettingsSet{SettingsSet: &pb.SettingsSetRequest{Values: map[string]string{"connection-rate": "1"}}}},
		"installer":   {Body: &pb.Request_InstallerCreate{InstallerCreate: &pb.InstallerCreateRequest{ValidForSeconds: 3600}}},
	} {
		_, err := relay.Call(ctx, req)
		if code := catalog.CodeOf(err); code != catalog.CodePermissionDenied {
			t.Errorf("%s by the relay's key: %v (code %s), want permission_denied", name, err, code)
		}
	}
}
