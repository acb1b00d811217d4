package coordinator_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/allowlist"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// agentlessSite: two reporting jumpoints, plant-a allowing
// 10.20.0.0/16:22,3389 and 10.30.0.5:80 to the jump group "plant"
// (tom is in it, tess is not).
type agentlessSite struct {
	*harness
	plantA, plantB, tess, tom *console.Client
}

func newAgentlessSite(t *testing.T) *agentlessSite {
	h := newHarness(t)
	s := &agentlessSite{harness: h, plantA: h.user("plant-a", pb.Role_ROLE_JUMPOINT), plantB: h.user("plant-b", pb.Role_ROLE_JUMPOINT),
		tess: h.user("tess", pb.Role_ROLE_TECHNICIAN), tom: h.user("tom", pb.Role_ROLE_TECHNICIAN)}
	mustRefresh(t, h, s.plantA, plantAAddrs)
	mustRefresh(t, h, s.plantB, plantBAddrs)
	if _, err := h.admin.CreateGroup(h.ctx(), "plant", "Plant floor", []*pb.GroupMember{{User: "tom", Role: pb.MemberRole_MEMBER_ROLE_MEMBER}}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.admin.SetJumpoint(h.ctx(), &pb.JumpointSetRequest{Name: "plant-a", SetAllow: true,
		Allow: []string{"10.20.0.0/16:22,3389", "10.30.0.5:80"}, SetGroups: true, Groups: []string{"plant"}}); err != nil {
		t.Fatalf("jumpoint set: %v", err)
	}
	return s
}

func (s *agentlessSite) jumpVia(c *console.Client, via, target string) (*pb.JumpResponse, error) {
	resp, err := c.Call(s.ctx(), &pb.Request{Body: &pb.Request_Jump{Jump: &pb.JumpRequest{Via: via, Target: target, Capability: grant.Forward}}})
	return resp.GetJump(), err
}

// TestJumpointSetValidates: bad entries, too many, unknown jumpoints and
// groups are invalid_argument and change nothing; technicians may not set;
// a good set shows in the list and the ACL, is audited, and ” clears.
func TestJumpointSetValidates(t *testing.T) {
	s := newAgentlessSite(t)
	ctx := s.ctx()
	var many []string
	for i := range allowlist.MaxEntries + 1 {
		many = append(many, fmt.Sprintf("10.0.%d.0/24:22", i))
	}
	for name, req := range map[string]*pb.JumpointSetRequest{
		"bad CIDR":         {Name: "plant-a", SetAllow: true, Allow: []string{"10.20.0.0/33:22"}},
		"host bits":        {Name: "plant-a", SetAllow: true, Allow: []string{"10.20.1.0/16:22"}},
		"port 0":           {Name: "plant-a", SetAllow: true, Allow: []string{"10.20.0.0/16:0"}},
		"no ports":         {Name: "plant-a", SetAllow: true, Allow: []string{"10.20.0.0/16"}},
		"a name":           {Name: "plant-a", SetAllow: true, Allow: []string{"db.lan:5432"}},
		"too many":         {Name: "plant-a", SetAllow: true, Allow: many},
		"unknown group":    {Name: "plant-a", SetGroups: true, Groups: []string{"nope"}},
		"not a jumpoint":   {Name: "tess", SetAllow: true, Allow: []string{"10.0.0.1:22"}},
		"unknown jumpoint": {Name: "plant-z", SetAllow: true, Allow: []string{"10.0.0.1:22"}},
	} {
		_, err := s.admin.SetJumpoint(ctx, req)
		if catalog.CodeOf(err) != catalog.CodeInvalidArgument {
			t.Errorf("%s: %v, want invalid_argument", name, err)
		}
	}
	_, err := s.tom.SetJumpoint(ctx, &pb.JumpointSetRequest{Name: "plant-a", SetAllow: true, Allow: []string{"0.0.0.0/0:1-65535"}})
	wantCode(t, err, catalog.CodePermissionDenied)

	want := []string{"10.20.0.0/16:22,3389", "10.30.0.5:80"}
	for _, v := range jumpointList(t, s.harness, s.tess) {
		if v.GetName() == "plant-a" && (!slices.Equal(v.GetAllow(), want) || !slices.Equal(v.GetGroups(), []string{"plant"})) {
			t.Errorf("plant-a after refused changes: allow %v groups %v, want %v [plant]", v.GetAllow(), v.GetGroups(), want)
		}
	}
	acl := mustRefresh(t, s.harness, s.plantA, plantAAddrs)
	if got := allowlist.FormatList(acl.GetAllow()); got != strings.Join(want, ", ") {
		t.Errorf("plant-a's ACL allows %s", got)
	}
	if acl := mustRefresh(t, s.harness, s.plantB, plantBAddrs); len(acl.GetAllow()) != 0 {
		t.Errorf("plant-b's ACL allows %s", allowlist.FormatList(acl.GetAllow()))
	}
	events, err := s.admin.Audit(ctx, &pb.AuditRequest{Kind: coordinator.AuditAdmin})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(events, func(e *pb.AuditEvent) bool {
		return e.GetAction() == coordinator.ActionJumpointSet && e.GetTarget() == "plant-a" && strings.Contains(e.GetDetail(), "10.30.0.5:80")
	}) {
		t.Error("no jumpoint.set audit event for plant-a naming the list")
	}

	// Clearing the list (groups untouched).
	v, err := s.admin.SetJumpoint(ctx, &pb.JumpointSetRequest{Name: "plant-a", SetAllow: true})
	if err != nil || len(v.GetAllow()) != 0 || !slices.Equal(v.GetGroups(), []string{"plant"}) {
		t.Fatalf("clear: %v, %v", v, err)
	}
	if acl := mustRefresh(t, s.harness, s.plantA, plantAAddrs); len(acl.GetAllow()) != 0 {
		t.Errorf("after clear the ACL allows %s", allowlist.FormatList(acl.GetAllow()))
	}
}

// TestAgentlessGrant: the grant names the jumpoint's key and the target,
// no peer; targets outside the list, technicians outside the groups and
// bad requests are refused with their codes; grants and refusals are
// audited with the jumpoint and the target.
func TestAgentlessGrant(t *testing.T) {
	s := newAgentlessSite(t)
	for _, c := range []*console.Client{s.admin, s.tom} {
		jr, err := s.jumpVia(c, "plant-a", "10.20.7.8:22")
		if err != nil {
			t.Fatalf("grant for %s: %v", c.ID(), err)
		}
		body, err := grant.VerifyTarget(jr.GetGrant(), grant.TargetCheck{Site: s.coord.ID(), Jumpoint: s.plantA.ID(), Technician: c.ID(), Now: s.clock.Now()})
		if err != nil {
			t.Fatalf("the grant does not verify as plant-a's: %v", err)
		}
		if body.GetTarget() != "10.20.7.8:22" || len(body.GetPeer()) != 0 || body.GetCapabilities() != grant.Forward {
			t.Errorf("grant body %v", body)
		}
		if len(jr.GetJumpoints()) != 1 || peer.ID(jr.GetJumpoints()[0].GetId()) != s.plantA.ID() || jr.GetJumpoints()[0].GetName() != "plant-a" ||
			!slices.Equal(addrTexts(jr.GetJumpoints()[0].GetAddrs()), plantAAddrs) || jr.GetPeer() != nil {
			t.Errorf("response jumpoints %v, peer %v", jr.GetJumpoints(), jr.GetPeer())
		}
	}
	// By peer ID, and a mapped IPv6 form of an allowed address.
	if _, err := s.jumpVia(s.tom, s.plantA.ID().String(), "[::ffff:10.30.0.5]:80"); err != nil {
		t.Errorf("by peer ID: %v", err)
	}

	_, err := s.jumpVia(s.tom, "plant-a", "10.30.0.5:81")
	wantCode(t, err, catalog.CodePermissionDenied)
	if err == nil || !containsAll(err.Error(), "10.30.0.5:81", "plant-a", "10.20.0.0/16:22,3389", "10.30.0.5:80") {
		t.Errorf("refusal outside the list does not name the target and the list: %v", err)
	}
	_, err = s.jumpVia(s.tess, "plant-a", "10.20.7.8:22")
	wantCode(t, err, catalog.CodePermissionDenied)
	if err == nil || !containsAll(err.Error(), "plant", "tess") {
		t.Errorf("refusal of a technician outside the groups: %v", err)
	}
	// plant-b names no group: administrators only, and its empty list allows nothing.
	_, err = s.jumpVia(s.tom, "plant-b", "10.20.7.8:22")
	wantCode(t, err, catalog.CodePermissionDenied)
	_, err = s.jumpVia(s.admin, "plant-b", "10.20.7.8:22")
	wantCode(t, err, catalog.CodePermissionDenied)
	// A deleted group grants nothing.
	if err := s.admin.DeleteGroup(s.ctx(), "plant"); err != nil {
		t.Fatal(err)
	}
	_, err = s.jumpVia(s.tom, "plant-a", "10.20.7.8:22")
	wantCode(t, err, catalog.CodePermissionDenied)

	for name, req := range map[string]*pb.JumpRequest{
		"a name":         {Via: "plant-a", Target: "plc.lan:22"},
		"no port":        {Via: "plant-a", Target: "10.20.7.8"},
		"no target":      {Via: "plant-a"},
		"peer and via":   {Ref: "web-01", Via: "plant-a", Target: "10.20.7.8:22"},
		"not a jumpoint": {Via: "tess", Target: "10.20.7.8:22"},
	} {
		_, err := s.admin.Call(s.ctx(), &pb.Request{Body: &pb.Request_Jump{Jump: req}})
		if catalog.CodeOf(err) != catalog.CodeInvalidArgument {
			t.Errorf("%s: %v, want invalid_argument", name, err)
		}
	}
	// A jumpoint silent since the coordinator started cannot be reached.
	s.user("plant-d", pb.Role_ROLE_JUMPOINT)
	if _, err := s.admin.SetJumpoint(s.ctx(), &pb.JumpointSetRequest{Name: "plant-d", SetAllow: true, Allow: []string{"10.20.0.0/16:22"}}); err != nil {
		t.Fatal(err)
	}
	_, err = s.jumpVia(s.admin, "plant-d", "10.20.7.8:22")
	wantCode(t, err, catalog.CodeJumpointUnreachable)

	events, err := s.admin.Audit(s.ctx(), &pb.AuditRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var grants, refusals int
	for _, e := range events {
		if e.GetJumpoint() != "plant-a" {
			continue
		}
		switch {
		case e.GetKind() == coordinator.AuditGrant && e.GetTarget() == "10.20.7.8:22" && e.GetSessionId() != "":
			grants++
		case e.GetKind() == coordinator.AuditRefused && e.GetCode() == string(catalog.CodePermissionDenied):
			refusals++
		}
	}
	if grants != 2 || refusals < 3 {
		t.Errorf("audit: %d grants (want 2) and %d refusals (want ≥ 3) for plant-a", grants, refusals)
	}
}

// TestJumpointTunnelsAudited: the tunnels a jumpoint reports become audit
// events of kind tunnel (the technician's user name from the key, target,
// bytes, start and end); more than one refresh carries are cut; a report
// sent again (its answer lost) audits none of its tunnels twice; a
// technician cannot report tunnels.
func TestJumpointTunnelsAudited(t *testing.T) {
	s := newAgentlessSite(t)
	start := s.clock.Now().Add(-time.Minute)
	rec := &pb.TunnelRecord{Technician: []byte(s.tom.ID()), User: "forged", Target: "10.20.7.8:22", GrantNonce: []byte{0xab, 0xcd},
		StartedUnixNano: start.UnixNano(), EndedUnixNano: start.Add(12 * time.Second).UnixNano(), BytesIn: 1234, BytesOut: 56789}
	parsed, _ := mesh.ParseMultiaddrs(plantAAddrs)
	report := func(c *console.Client, recs []*pb.TunnelRecord, dropped uint64) error {
		_, err := c.Call(s.ctx(), &pb.Request{Body: &pb.Request_JumpointAcl{JumpointAcl: &pb.JumpointACLRequest{
			Addrs: mesh.EncodeAddrs(parsed), Tunnels: recs, TunnelsDropped: dropped}}})
		return err
	}
	if err := report(s.plantA, []*pb.TunnelRecord{rec}, 0); err != nil {
		t.Fatal(err)
	}
	wantCode(t, report(s.tom, []*pb.TunnelRecord{rec}, 0), catalog.CodePermissionDenied)
	many := make([]*pb.TunnelRecord, coordinator.MaxTunnelReports+10)
	for i := range many {
		many[i] = proto.CloneOf(rec)
		many[i].StartedUnixNano += int64(i + 1)
	}
	if err := report(s.plantA, many, 7); err != nil {
		t.Fatal(err)
	}
	events, err := s.admin.Audit(s.ctx(), &pb.AuditRequest{Kind: coordinator.AuditTunnel, Limit: 0})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1+coordinator.MaxTunnelReports+1 {
		t.Fatalf("%d tunnel events, want %d (one, %d of the big report, one for the drops)", len(events), 2+coordinator.MaxTunnelReports, coordinator.MaxTunnelReports)
	}
	// A resend (the answer was lost) audits none of them again.
	if err := report(s.plantA, many, 0); err != nil {
		t.Fatal(err)
	}
	again, err := s.admin.Audit(s.ctx(), &pb.AuditRequest{Kind: coordinator.AuditTunnel, Limit: 0})
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != len(events) {
		t.Fatalf("%d tunnel events after the report was sent again, want %d", len(again), len(events))
	}
	e := events[0]
	if e.GetUser() != "tom" || peer.ID(e.GetTechnician()) != s.tom.ID() || e.GetJumpoint() != "plant-a" || e.GetTarget() != "10.20.7.8:22" ||
		e.GetBytesIn() != 1234 || e.GetBytesOut() != 56789 || e.GetSessionId() != "abcd" ||
		e.GetStartedUnixNano() != rec.GetStartedUnixNano() || e.GetEndedUnixNano() != rec.GetEndedUnixNano() {
		t.Errorf("tunnel event %v", e)
	}
	if !slices.ContainsFunc(events, func(e *pb.AuditEvent) bool { return strings.Contains(e.GetDetail(), "dropped 7") }) {
		t.Error("no event for the 7 dropped records")
	}
}
