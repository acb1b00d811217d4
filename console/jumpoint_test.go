package console_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	libp2ppeer "github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/member"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/tunnel"
	"github.com/jumpmesh/jumpmesh/peer"
)

// jumpointSite is a site with a jumpoint (an enrolled member with role
// jumpoint serving tunnels on loopback) and a peer installed from a key
// naming it, online through it.
type jumpointSite struct {
	site     *coordinatortest.Site[*console.Client]
	jumpoint *member.Client
	srv      *tunnel.Server
	peerID   libp2ppeer.ID

	mu     sync.Mutex
	grants []*pb.JumpGrant
}

// newJumpointSite: the test's Authorize lets a tunnel through to the
// coordinator (the peer's registration) or with a grant (a console), and
// records the grants.
func newJumpointSite(t *testing.T) *jumpointSite {
	t.Helper()
	s := &jumpointSite{site: coordinatortest.New(t, console.Login)}
	site := s.site
	coord := hostPort(t, site.Addr)

	code := site.Invite("plant-a", pb.Role_ROLE_JUMPOINT)
	m, _, err := member.Login(site.Ctx(), coordinatortest.MemberFiles(site.Home("plant-a")), site.Addr, code,
		mesh.HostConfig{ListenAddrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")}})
	if err != nil {
		t.Fatal(err)
	}
	s.jumpoint = m
	s.srv = tunnel.Serve(m.Host(), tunnel.Config{Authorize: func(_ libp2ppeer.ID, o *pb.TunnelOpen) error {
		if o.GetGrant() != nil {
			s.mu.Lock()
			s.grants = append(s.grants, o.GetGrant())
			s.mu.Unlock()
			return nil
		}
		if o.GetTarget() == coord {
			return nil
		}
		return catalog.Errorf(catalog.CodePermissionDenied, "(no grant)")
	}})
	t.Cleanup(func() { s.srv.Close(); m.Close() })
	if _, err := m.Call(site.Ctx(), &pb.Request{Body: &pb.Request_JumpointAcl{JumpointAcl: &pb.JumpointACLRequest{
		Addrs: mesh.EncodeAddrs(m.Host().Addrs())}}}); err != nil {
		t.Fatalf("jumpoint report: %v", err)
	}

	resp, err := site.Admin.Call(site.Ctx(), &pb.Request{Body: &pb.Request_InstallerCreate{InstallerCreate: &pb.InstallerCreateRequest{
		Defaults: &pb.InstallerDefaults{Name: "plc-01"}, ValidForSeconds: 3600, Jumpoints: []string{"plant-a"}}}})
	if err != nil {
		t.Fatalf("installer create --jumpoint plant-a: %v", err)
	}
	uid := 1000
	dir := filepath.Join(t.TempDir(), "jumpmesh")
	if _, err := peer.Install(peer.InstallOptions{Key: resp.GetInstaller().GetKey(), Dir: dir, Binary: os.Args[0], Clock: site.Clock, EUID: &uid}); err != nil {
		t.Fatal(err)
	}
	d, err := peer.Open(peer.RunConfig{Dir: dir, Version: "test", Clock: site.Clock, Listen: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		t.Fatal(err)
	}
	s.peerID = d.ID()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; d.Close() })
	coordinatortest.Eventually(t, 20*time.Second, "the peer online through the jumpoint", func() bool {
		v, err := site.Admin.Peer(site.Ctx(), s.peerID.String())
		return err == nil && v.GetStatus() == "online" && len(v.GetJumpoints()) == 1
	})
	return s
}

func hostPort(t *testing.T, addr string) string {
	t.Helper()
	transport, _ := libp2ppeer.SplitAddr(ma.StringCast(addr))
	_, hp, err := manet.DialArgs(transport)
	if err != nil {
		t.Fatal(err)
	}
	return hp
}

// TestJumpThroughAJumpoint: a technician's exec on a peer behind a
// jumpoint runs end to end through it (the coordinator's jump response
// names the jumpoint; the jumpoint saw the grant), the path is the
// jumpoint's, and ping goes the same way.
func TestJumpThroughAJumpoint(t *testing.T) {
	s := newJumpointSite(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var path console.Path
	err := s.site.Admin.WithJump(ctx, "plc-01", console.Need{Capability: grant.Exec, Argv: []string{"sh", "-c", "echo through"}}, func(j *console.Jump) error {
		if len(j.Jumpoints) != 1 || libp2ppeer.ID(j.Jumpoints[0].GetId()) != s.jumpoint.ID() {
			t.Fatalf("jump response jumpoints %v, want plant-a", j.Jumpoints)
		}
		ch, err := j.Open(ctx, &pb.ChannelOpen{Kind: &pb.ChannelOpen_Exec{Exec: &pb.ExecOpen{Argv: []string{"sh", "-c", "echo through"}}}})
		if err != nil {
			return err
		}
		defer ch.Close()
		var out bytes.Buffer
		st, err := console.Exec(ctx, ch, console.ExecIO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out})
		if err != nil {
			return err
		}
		if out.String() != "through\n" || st.GetCode() != 0 {
			t.Errorf("exec: %q, %v", out.String(), st)
		}
		path = j.Path()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if path.Kind != console.PathJumpoint || path.Relay != s.jumpoint.ID() || path.Jumpoint != "plant-a" ||
		!strings.HasPrefix(path.String(), "via jumpoint plant-a ") {
		t.Errorf("path %+v (%q), want via jumpoint plant-a", path, path)
	}
	s.mu.Lock()
	grants := len(s.grants)
	s.mu.Unlock()
	if grants == 0 {
		t.Error("the jumpoint saw no grant: the session did not go through it")
	}
	if s.site.Admin.Host().Network().Connectedness(s.peerID) == network.Connected {
		t.Error("the console's main host connected to the peer itself")
	}

	res, err := s.site.Admin.Ping(ctx, "plc-01", console.PingOptions{Count: 2, Interval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Path.Initial != console.PathJumpoint || res.Path.Final != console.PathJumpoint || len(res.Rounds) != 2 ||
		res.Rounds[0].Path.Jumpoint != "plant-a" {
		t.Errorf("ping path %+v, rounds %+v; want jumpoint throughout", res.Path, res.Rounds)
	}
}
