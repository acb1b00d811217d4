package member_test

import (
	"net"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/member"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// The login answer tells the member the coordinator's members' lane; the
// member keeps it in its config and connects through it (TCP) the next
// time. A lane that no longer answers (the port closed) costs nothing
// but the try: the member connects at the coordinator's other addresses.
func TestMemberConnectsThroughTheLane(t *testing.T) {
	site := coordinatortest.New(t, coordinatortest.MemberLogin)
	c, f := loginRelay(t, site)
	c.Close()
	cfg, err := f.LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	lane := site.Coord.LaneAddrs()
	if len(cfg.Lane) == 0 || len(lane) == 0 {
		t.Fatalf("the member keeps lane %v; the coordinator's is %v", cfg.Lane, lane)
	}
	whoami := &pb.Request{Body: &pb.Request_Whoami{Whoami: &pb.Empty{}}}
	remotePort := func(c *member.Client) string {
		t.Helper()
		conns := c.Host().Network().ConnsToPeer(c.Site())
		if len(conns) != 1 {
			t.Fatalf("%d connections to the coordinator, want 1", len(conns))
		}
		port, err := conns[0].RemoteMultiaddr().ValueForProtocol(ma.P_TCP)
		if err != nil {
			t.Fatalf("connected at %s, want TCP", conns[0].RemoteMultiaddr())
		}
		return port
	}

	c, err = member.Open(f, mesh.HostConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Call(site.Ctx(), whoami); err != nil {
		t.Fatal(err)
	}
	if got, want := remotePort(c), portOf(lane[0]); got != want {
		t.Errorf("connected at port %s, want the lane's %s", got, want)
	}
	c.Close()

	// A lane where nothing listens (a port just closed).
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead, err := manet.FromNetAddr(l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	cfg.Lane = []string{dead.String()}
	if err := f.SaveConfig(cfg); err != nil {
		t.Fatal(err)
	}
	c, err = member.Open(f, mesh.HostConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Call(site.Ctx(), whoami); err != nil {
		t.Fatalf("with a dead lane: %v", err)
	}
	if got := remotePort(c); got == portOf(dead) {
		t.Fatalf("connected at the dead lane's port %s", got)
	}
	// The answer told the lane again.
	if cfg, err = f.LoadConfig(); err != nil || len(cfg.Lane) == 0 || cfg.Lane[0] == dead.String() {
		t.Fatalf("lane after the answer: %v (%v)", cfg.Lane, err)
	}
}

// TestMemberTakesTheLaneAgainAfterAnAnswer: a call cut on the lane (a
// coordinator restart under a daemon's ACL fetch looks the same as the
// lane refusing a removed technician's key) drops the lane; the next
// answer, from the main port, tells the lane again and the member's next
// connection takes it. A relay or a jumpoint, which lives for months,
// must not lose the lane for good at its coordinator's first restart.
func TestMemberTakesTheLaneAgainAfterAnAnswer(t *testing.T) {
	site := coordinatortest.New(t, coordinatortest.MemberLogin)
	c, _ := loginRelay(t, site)
	defer c.Close()
	lane := portOf(site.Coord.LaneAddrs()[0])
	whoami := &pb.Request{Body: &pb.Request_Whoami{Whoami: &pb.Empty{}}}
	port := func() string {
		t.Helper()
		if err := c.Host().Network().ClosePeer(c.Site()); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Call(site.Ctx(), whoami); err != nil {
			t.Fatal(err)
		}
		conns := c.Host().Network().ConnsToPeer(c.Site())
		if len(conns) != 1 {
			t.Fatalf("%d connections to the coordinator, want 1", len(conns))
		}
		p, _ := conns[0].RemoteMultiaddr().ValueForProtocol(ma.P_TCP)
		return p
	}
	// The lane is dialled alone for member.LaneHead, then the main port
	// too: on a busy machine the main port may win a connect now and then.
	onLane := func(what string) {
		t.Helper()
		coordinatortest.Eventually(t, 10*time.Second, what, func() bool { return port() == lane })
	}
	onLane("a connection on the lane")
	if !c.DropLane() {
		t.Fatal("the member had no lane to drop")
	}
	if got := port(); got == lane {
		t.Fatalf("connected at the lane's port %s right after dropping it", got)
	}
	onLane("a connection on the lane after an answer told it again")
}

func portOf(a ma.Multiaddr) string {
	p, _ := a.ValueForProtocol(ma.P_TCP)
	return p
}

// TestMemberReconnectsAsSoonAsTheCoordinatorIsBack: a member whose call
// found its coordinator down (restarting: the start of a reconnect storm)
// reaches it with its next call once it is back, at its lane or its main
// port. libp2p's dial backoff would refuse every dial to the addresses
// that just failed for 5 s and more ("dial backoff"): a relay fetching
// its ACL, a jumpoint or a technician's agent stayed cut off meanwhile
// (TestRelayACLPassesTheStormQueue took 5.4 s instead of 0.5 on a busy
// machine, and sometimes more than its 15 s).
func TestMemberReconnectsAsSoonAsTheCoordinatorIsBack(t *testing.T) {
	site := coordinatortest.New(t, coordinatortest.MemberLogin)
	c, _ := loginRelay(t, site)
	whoami := &pb.Request{Body: &pb.Request_Whoami{Whoami: &pb.Empty{}}}
	if _, err := c.Call(site.Ctx(), whoami); err != nil {
		t.Fatal(err)
	}
	site.Stop()
	for range 2 { // the second try meets the backoff of the first's addresses
		_, err := c.Call(site.Ctx(), whoami)
		coordinatortest.WantCode(t, err, catalog.CodeCoordinatorDown)
	}
	site.Start()
	if _, err := c.Call(site.Ctx(), whoami); err != nil {
		t.Fatalf("the first call after the coordinator came back: %v", err)
	}
}
