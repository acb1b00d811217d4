package coordinator_test

import (
	"net/netip"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/channel"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// TestGrantCarriesConsoleIP: a jump grant names, signed, the IP the
// coordinator saw the technician's request come from (on loopback here),
// the one address the peer may aim port-mapping probes at.
func TestGrantCarriesConsoleIP(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	ctx := site.Ctx()
	db := newRawPeer(t, site).online(site, site.Installer(&pb.InstallerDefaults{Name: "db-01"}, 0, week).GetKey(), "db")
	j, err := site.Admin.Jump(ctx, db.id().String(), grant.Exec)
	if err != nil {
		t.Fatal(err)
	}
	body, err := grant.Verify(j.Grant, grant.Check{Site: site.Coord.ID(), Peer: db.id(), Technician: site.Admin.ID(), Now: site.Clock.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if ip, err := netip.ParseAddr(body.GetConsoleIp()); err != nil || !ip.IsLoopback() {
		t.Fatalf("grant console_ip %q, want the console's loopback address", body.GetConsoleIp())
	}
}

// A console cannot choose the grant's console_ip: nothing in a jump
// request sets it, not even a field that looks like it (an unknown field
// 18, console_ip's number in JumpGrantBody, with an address of the
// console's choice).
func TestConsoleCannotChooseConsoleIP(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	ctx := site.Ctx()
	db := newRawPeer(t, site).online(site, site.Installer(&pb.InstallerDefaults{Name: "db-01"}, 0, week).GetKey(), "db")
	const victim = "198.51.100.66"
	req := &pb.JumpRequest{Ref: db.id().String(), Capability: grant.Exec, Protocol: string(channel.Protocol)}
	var extra []byte
	extra = protowire.AppendTag(extra, 18, protowire.BytesType)
	extra = protowire.AppendString(extra, victim)
	req.ProtoReflect().SetUnknown(extra)
	resp, err := site.Admin.Call(ctx, &pb.Request{Body: &pb.Request_Jump{Jump: req}})
	if err != nil {
		t.Fatal(err)
	}
	body, err := grant.Parse(resp.GetJump().GetGrant())
	if err != nil {
		t.Fatal(err)
	}
	if body.GetConsoleIp() == victim {
		t.Fatalf("the console chose the grant's console_ip %s", victim)
	}
	if ip, err := netip.ParseAddr(body.GetConsoleIp()); err != nil || !ip.IsLoopback() {
		t.Fatalf("grant console_ip %q, want the console's loopback address", body.GetConsoleIp())
	}
}
