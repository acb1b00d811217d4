package coordinator_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/installerkey"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// The addresses the test jumpoints report on the networks they serve.
var (
	plantAAddrs = []string{"/ip4/10.20.0.5/tcp/4833", "/ip4/10.20.0.5/udp/4833/quic-v1"}
	plantBAddrs = []string{"/ip4/10.20.0.6/tcp/4833"}
)

// refresh is a jumpoint's ACL fetch, reporting addrs and stats.
func refresh(t *testing.T, h *harness, jp *console.Client, addrs []string, stats *pb.JumpointStats) (*pb.JumpointACL, error) {
	t.Helper()
	parsed, err := mesh.ParseMultiaddrs(addrs)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := jp.Call(h.ctx(), &pb.Request{Body: &pb.Request_JumpointAcl{JumpointAcl: &pb.JumpointACLRequest{
		Addrs: mesh.EncodeAddrs(parsed), Stats: stats}}})
	return resp.GetJumpointAcl(), err
}

func mustRefresh(t *testing.T, h *harness, jp *console.Client, addrs []string) *pb.JumpointACL {
	t.Helper()
	acl, err := refresh(t, h, jp, addrs, nil)
	if err != nil {
		t.Fatalf("the jumpoint's own ACL fetch: %v", err)
	}
	return acl
}

func jumpointInstaller(h *harness, by *console.Client, names ...string) (*pb.Installer, error) {
	return by.CreateInstaller(h.ctx(), &pb.InstallerCreateRequest{ValidForSeconds: int64(week / time.Second), Jumpoints: names})
}

func ids(raw [][]byte) []string {
	out := make([]string, len(raw))
	for i, b := range raw {
		out[i] = peer.ID(b).String()
	}
	slices.Sort(out)
	return out
}

func sorted(ss ...string) []string { slices.Sort(ss); return ss }

func addrTexts(raw [][]byte) []string {
	var out []string
	for _, a := range mesh.DecodeAddrs(raw) {
		out = append(out, a.String())
	}
	return out
}

// jumpointSite is a site with two jumpoints that reported their addresses,
// a technician, a relay, a peer behind plant-a and a peer that reaches the
// site itself.
type jumpointSite struct {
	*harness
	plantA, plantB, tech, relay *console.Client
	behind, direct              *rawPeer
	key                         *pb.Installer
}

func newJumpointSite(t *testing.T) *jumpointSite {
	h := newHarness(t)
	s := &jumpointSite{harness: h,
		plantA: h.user("plant-a", pb.Role_ROLE_JUMPOINT), plantB: h.user("plant-b", pb.Role_ROLE_JUMPOINT),
		tech: h.user("tess", pb.Role_ROLE_TECHNICIAN), relay: h.user("relay-1", pb.Role_ROLE_RELAY)}
	mustRefresh(t, h, s.plantA, plantAAddrs)
	mustRefresh(t, h, s.plantB, plantBAddrs)
	var err error
	if s.key, err = jumpointInstaller(h, h.admin, "plant-a"); err != nil {
		t.Fatalf("installer through plant-a: %v", err)
	}
	plain := must[*pb.Installer](t)(jumpointInstaller(h, h.admin))
	s.behind = newRawPeer(t, h.Site).online(h.Site, s.key.GetKey(), "plc-01")
	s.direct = newRawPeer(t, h.Site).online(h.Site, plain.GetKey(), "web-01")
	return s
}

// TestJumpointACLListsItsPeersAndTechnicians: a jumpoint's ACL holds
// exactly the peers whose record names it and the consoles of technicians
// and administrators (not relays, not jumpoints), with the site's
// addresses; a second jumpoint gets none of the first one's peers.
func TestJumpointACLListsItsPeersAndTechnicians(t *testing.T) {
	s := newJumpointSite(t)
	acl := mustRefresh(t, s.harness, s.plantA, plantAAddrs)
	if got, want := ids(acl.GetPeers()), []string{s.behind.id().String()}; !slices.Equal(got, want) {
		t.Errorf("plant-a's peers = %v, want %v", got, want)
	}
	if got, want := ids(acl.GetTechnicians()), sorted(s.admin.ID().String(), s.tech.ID().String()); !slices.Equal(got, want) {
		t.Errorf("technicians = %v, want the admin's and tess's keys %v", got, want)
	}
	if acl.GetName() != "plant-a" || acl.GetRefreshSeconds() != 30 {
		t.Errorf("name %q, refresh %d s", acl.GetName(), acl.GetRefreshSeconds())
	}
	site := mesh.DecodeAddrs(acl.GetSiteAddrs())
	if len(site) == 0 {
		t.Fatal("no site addresses")
	}
	for _, a := range site {
		info, err := peer.AddrInfoFromP2pAddr(a)
		if err != nil || info.ID != s.coord.ID() {
			t.Errorf("site address %s is not the coordinator's with /p2p/ (%v)", a, err)
		}
	}
	if b := mustRefresh(t, s.harness, s.plantB, plantBAddrs); len(b.GetPeers()) != 0 {
		t.Errorf("plant-b serves %v, which no key names it for", ids(b.GetPeers()))
	}

	// A deleted peer leaves the ACL at the next refresh.
	s.behind.h.Close()
	coordinatorWaitOffline(t, s.harness, s.behind.id())
	if err := s.admin.RemovePeers(s.ctx(), s.behind.id().String()); err != nil {
		t.Fatal(err)
	}
	if acl := mustRefresh(t, s.harness, s.plantA, plantAAddrs); len(acl.GetPeers()) != 0 {
		t.Errorf("after rm plant-a still serves %v", ids(acl.GetPeers()))
	}
}

func coordinatorWaitOffline(t *testing.T, h *harness, id peer.ID) {
	t.Helper()
	coordinatortest.Eventually(t, 10*time.Second, "peer "+id.String()+" offline", func() bool {
		v, err := h.admin.Peer(h.ctx(), id.String())
		return err == nil && v.GetStatus() == coordinator.StatusOffline
	})
}

// TestOnlyJumpointsFetchTheJumpointACL: the ACL names the site's
// technicians and the peers behind a jumpoint; a technician, an
// administrator or a relay operator asking for it is refused.
func TestOnlyJumpointsFetchTheJumpointACL(t *testing.T) {
	s := newJumpointSite(t)
	for name, c := range map[string]*console.Client{"technician": s.tech, "admin": s.admin, "relay": s.relay} {
		_, err := refresh(t, s.harness, c, plantAAddrs, nil)
		if code := catalog.CodeOf(err); code != catalog.CodePermissionDenied {
			t.Errorf("jumpoint ACL fetched by a %s: %v (code %s), want permission_denied", name, err, code)
		}
	}
	// A technician's attempt did not register her as a jumpoint.
	for _, v := range jumpointList(t, s.harness, s.admin) {
		if v.GetName() == "tess" || v.GetName() == "relay-1" {
			t.Errorf("%s listed as a jumpoint", v.GetName())
		}
	}
}

// TestJumpointMayOnlyFetchItsACL: a jumpoint operator who takes the
// jumpoint's key and calls the coordinator like a console gets nothing
// else: no peers, no grant, no administration, no relay ACL.
func TestJumpointMayOnlyFetchItsACL(t *testing.T) {
	s := newJumpointSite(t)
	ctx := s.ctx()
	if _, err := s.plantA.WhoAmI(ctx); err != nil {
		t.Errorf("whoami by the jumpoint: %v", err)
	}
	for name, req := range map[string]*pb.Request{
		"peer list":     {Body: &pb.Request_PeerList{PeerList: &pb.PeerListRequest{}}},
		"peer show":     {Body: &pb.Request_PeerShow{PeerShow: &pb.PeerRefRequest{Refs: []string{s.behind.id().String()}}}},
		"jump":          {Body: &pb.Request_Jump{Jump: &pb.JumpRequest{Ref: s.behind.id().String()}}},
		"audit":         {Body: &pb.Request_Audit{Audit: &pb.AuditRequest{}}},
		"user invite":   {Body: &pb.Request_UserInvite{UserInvite: &pb.UserInviteRequest{Name: "mallory", Role: pb.Role_ROLE_ADMIN, ValidForSeconds: 3600}}},
		"settings":      {Body: &pb.Request_SettingsSet{SettingsSet: &pb.SettingsSetRequest{Values: map[string]string{"connection-rate": "1"}}}},
		"installer":     {Body: &pb.Request_InstallerCreate{InstallerCreate: &pb.InstallerCreateRequest{ValidForSeconds: 3600, Jumpoints: []string{"plant-a"}}}},
		"relay ACL":     {Body: &pb.Request_RelayAcl{RelayAcl: &pb.RelayACLRequest{}}},
		"jumpoint list": {Body: &pb.Request_JumpointList{JumpointList: &pb.Empty{}}},
		"user list":     {Body: &pb.Request_UserList{UserList: &pb.Empty{}}},
	} {
		_, err := s.plantA.Call(ctx, req)
		if code := catalog.CodeOf(err); code != catalog.CodePermissionDenied {
			t.Errorf("%s by the jumpoint's key: %v (code %s), want permission_denied", name, err, code)
		}
	}
	// Nor may an administrator turn the jumpoint into a person's account.
	_, err := s.admin.SetRole(ctx, "plant-a", pb.Role_ROLE_ADMIN)
	wantCode(t, err, catalog.CodeInvalidArgument)
}

// TestRemovedJumpointRefused: once its user is removed, a jumpoint's key
// gets no ACL (and so serves no one after its next refresh).
func TestRemovedJumpointRefused(t *testing.T) {
	s := newJumpointSite(t)
	if err := s.admin.RemoveUser(s.ctx(), "plant-a"); err != nil {
		t.Fatal(err)
	}
	_, err := refresh(t, s.harness, s.plantA, plantAAddrs, nil)
	wantCode(t, err, catalog.CodeUnknownTechnician)
	_, err = jumpointInstaller(s.harness, s.admin, "plant-a")
	wantCode(t, err, catalog.CodeInvalidArgument)
}

// TestInstallerNamesJumpoints: the key carries each named jumpoint's ID,
// name and reported addresses, by name or peer ID; names that are not
// enrolled, reporting jumpoints are refused, naming them.
func TestInstallerNamesJumpoints(t *testing.T) {
	h := newHarness(t)
	plantA := h.user("plant-a", pb.Role_ROLE_JUMPOINT)
	plantB := h.user("plant-b", pb.Role_ROLE_JUMPOINT)
	tech := h.user("tess", pb.Role_ROLE_TECHNICIAN)
	h.Invite("plant-c", pb.Role_ROLE_JUMPOINT) // invited, never enrolled

	// Enrolled but silent: refused, naming it.
	_, err := jumpointInstaller(h, h.admin, "plant-a")
	wantCode(t, err, catalog.CodeInvalidArgument)
	if err == nil || !containsAll(err.Error(), "plant-a", "reported") {
		t.Errorf("refusal does not name the jumpoint: %v", err)
	}
	mustRefresh(t, h, plantA, plantAAddrs)
	mustRefresh(t, h, plantB, plantBAddrs)

	for name, names := range map[string][]string{
		"unknown name":          {"plant-z"},
		"a technician":          {"tess"},
		"invited, not enrolled": {"plant-c"},
		"unknown peer ID":       {newRawPeer(t, h.Site).id().String()},
		"a technician's key":    {tech.ID().String()},
		"one good, one bad":     {"plant-a", "nope"},
	} {
		_, err := jumpointInstaller(h, h.admin, names...)
		if catalog.CodeOf(err) != catalog.CodeInvalidArgument || !containsAll(err.Error(), names[len(names)-1]) {
			t.Errorf("%s: %v, want invalid_argument naming %s", name, err, names[len(names)-1])
		}
	}
	_, err = h.admin.CreateInstaller(h.ctx(), &pb.InstallerCreateRequest{ValidForSeconds: 3600, Jumpoint: plantA.ID().String()})
	wantCode(t, err, catalog.CodeInvalidArgument) // the old single field

	// By name and by peer ID (repeated: once), in the order given; a
	// technician may make such a key for her own list.
	in := must[*pb.Installer](t)(jumpointInstaller(h, tech, "plant-b", plantA.ID().String(), "plant-b"))
	k, err := installerkey.Verify(in.GetKey(), installerkey.VerifyOptions{Site: h.coord.ID(), Now: h.clock.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if len(k.Jumpoints) != 2 {
		t.Fatalf("key names %d jumpoints, want 2: %v", len(k.Jumpoints), k.Jumpoints)
	}
	for i, want := range []struct {
		id    peer.ID
		name  string
		addrs []string
	}{{plantB.ID(), "plant-b", plantBAddrs}, {plantA.ID(), "plant-a", plantAAddrs}} {
		got := k.Jumpoints[i]
		if got.ID != want.id || got.Name != want.name || !slices.Equal(maStrings(got.Addrs), want.addrs) {
			t.Errorf("jumpoint %d = %s %s %v, want %s %s %v", i, got.Name, got.ID, got.Addrs, want.name, want.id, want.addrs)
		}
	}
}

func maStrings(addrs []ma.Multiaddr) []string {
	var out []string
	for _, a := range addrs {
		out = append(out, a.String())
	}
	return out
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// TestPeerBehindJumpoint: a peer enrolled with a key naming a jumpoint has
// it in its record, matches method:jumpoint, and consoles get the
// jumpoint (name, current addresses) with its grant and its view.
func TestPeerBehindJumpoint(t *testing.T) {
	s := newJumpointSite(t)
	ctx := s.ctx()
	v := must[*pb.PeerView](t)(s.admin.Peer(ctx, s.behind.id().String()))
	if got := ids(v.GetPeer().GetJumpoints()); !slices.Equal(got, []string{s.plantA.ID().String()}) {
		t.Fatalf("record names jumpoints %v, want plant-a %s", got, s.plantA.ID())
	}
	wantRefs(t, "peer show", v.GetJumpoints(), s.plantA.ID(), plantAAddrs)
	if d := must[*pb.PeerView](t)(s.admin.Peer(ctx, s.direct.id().String())); len(d.GetPeer().GetJumpoints()) != 0 || len(d.GetJumpoints()) != 0 {
		t.Errorf("a peer installed without jumpoints names %v", d.GetJumpoints())
	}

	found := must[[]*pb.PeerView](t)(s.admin.Peers(ctx, "method:jumpoint", false))
	if len(found) != 1 || peer.ID(found[0].GetPeer().GetId()) != s.behind.id() {
		t.Errorf("method:jumpoint found %d peers, want plc-01", len(found))
	}
	if found := must[[]*pb.PeerView](t)(s.admin.Peers(ctx, "method:active", false)); len(found) != 1 || peer.ID(found[0].GetPeer().GetId()) != s.direct.id() {
		t.Errorf("method:active found %d peers, want web-01 only", len(found))
	}

	// The jumpoint moved: grants carry where it is now.
	moved := []string{"/ip4/10.20.0.50/tcp/4833"}
	mustRefresh(t, s.harness, s.plantA, moved)
	resp, err := s.admin.Call(ctx, &pb.Request{Body: &pb.Request_Jump{Jump: &pb.JumpRequest{Ref: s.behind.id().String()}}})
	if err != nil {
		t.Fatalf("jump: %v", err)
	}
	wantRefs(t, "jump", resp.GetJump().GetJumpoints(), s.plantA.ID(), moved)
	direct, err := s.admin.Call(ctx, &pb.Request{Body: &pb.Request_Jump{Jump: &pb.JumpRequest{Ref: s.direct.id().String()}}})
	if err != nil {
		t.Fatalf("jump: %v", err)
	}
	if j := direct.GetJump().GetJumpoints(); len(j) != 0 {
		t.Errorf("jump to a direct peer carries jumpoints %v", j)
	}
}

func wantRefs(t *testing.T, what string, refs []*pb.JumpointRef, id peer.ID, addrs []string) {
	t.Helper()
	if len(refs) != 1 || peer.ID(refs[0].GetId()) != id || refs[0].GetName() != "plant-a" || !slices.Equal(addrTexts(refs[0].GetAddrs()), addrs) {
		t.Errorf("%s: jumpoints %v, want plant-a %s at %v", what, refs, id, addrs)
	}
}

func jumpointList(t *testing.T, h *harness, c *console.Client) []*pb.JumpointView {
	t.Helper()
	resp, err := c.Call(h.ctx(), &pb.Request{Body: &pb.Request_JumpointList{JumpointList: &pb.Empty{}}})
	if err != nil {
		t.Fatalf("jumpoint list: %v", err)
	}
	return resp.GetJumpoints().GetJumpoints()
}

// TestJumpointList: technicians see each jumpoint with what it last
// reported, its peers online and in total, and whether it refreshed within
// three periods.
func TestJumpointList(t *testing.T) {
	s := newJumpointSite(t)
	s.Invite("plant-c", pb.Role_ROLE_JUMPOINT)
	stats := &pb.JumpointStats{TunnelsOpen: 2, TunnelsTotal: 40, RefusedTotal: 3, BytesTotal: 1 << 20, PeersConnected: 1}
	if _, err := refresh(t, s.harness, s.plantA, plantAAddrs, stats); err != nil {
		t.Fatal(err)
	}
	views := jumpointList(t, s.harness, s.tech)
	if len(views) != 3 || views[0].GetName() != "plant-a" || views[1].GetName() != "plant-b" || views[2].GetName() != "plant-c" {
		t.Fatalf("list = %v, want plant-a, plant-b, plant-c", views)
	}
	a := views[0]
	if peer.ID(a.GetId()) != s.plantA.ID() || !a.GetOnline() || a.GetPeersTotal() != 1 || a.GetPeersOnline() != 1 ||
		a.GetStats().GetTunnelsTotal() != 40 || a.GetLastSeenUnix() != s.clock.Now().Unix() || !slices.Equal(addrTexts(a.GetAddrs()), plantAAddrs) {
		t.Errorf("plant-a = %v", a)
	}
	if b := views[1]; !b.GetOnline() || b.GetPeersTotal() != 0 {
		t.Errorf("plant-b = %v", b)
	}
	if c := views[2]; len(c.GetId()) != 0 || c.GetOnline() {
		t.Errorf("plant-c (invited only) = %v", c)
	}

	// A jumpoint cannot grow the keys that name it without bound.
	many := make([]string, coordinator.MaxJumpointAddrs+5)
	for i := range many {
		many[i] = fmt.Sprintf("/ip4/10.20.1.%d/tcp/4833", i+1)
	}
	mustRefresh(t, s.harness, s.plantB, many)
	if got := jumpointList(t, s.harness, s.tech)[1].GetAddrs(); len(got) != coordinator.MaxJumpointAddrs {
		t.Errorf("plant-b reported %d addresses and is listed with %d, want the first %d", len(many), len(got), coordinator.MaxJumpointAddrs)
	}

	// The peer behind plant-a goes offline; plant-b stops refreshing.
	s.behind.h.Close()
	coordinatorWaitOffline(t, s.harness, s.behind.id())
	s.clock.Advance(3*coordinator.JumpointRefresh + time.Second)
	mustRefresh(t, s.harness, s.plantA, plantAAddrs)
	views = jumpointList(t, s.harness, s.admin)
	if a := views[0]; !a.GetOnline() || a.GetPeersTotal() != 1 || a.GetPeersOnline() != 0 {
		t.Errorf("plant-a after its peer left = %v", a)
	}
	if b := views[1]; b.GetOnline() {
		t.Errorf("plant-b silent for 3 periods is online: %v", b)
	}
}
