package coordinator_test

import (
	"crypto/rand"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	lpeer "github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/control"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// laneSite is a site whose handshake gate holds a silent connection's
// place for a minute (no handshake has completed yet since the restart),
// and the TCP address of its members' lane.
func laneSite(t *testing.T) (s *coordinatortest.Site[*console.Client], lane net.Addr) {
	t.Helper()
	s = coordinatortest.New(t, console.Login)
	if _, err := s.Admin.WhoAmI(s.Ctx()); err != nil { // an answer tells the console the lane
		t.Fatal(err)
	}
	s.Stop()
	s.Resources = coordinator.Resources{HandshakeHold: time.Minute}
	s.Start()
	laneAddrs := s.Coord.LaneAddrs()
	if len(laneAddrs) == 0 {
		t.Fatal("the coordinator has no members' lane")
	}
	lane = coordinatortest.TCPNetAddr(t, laneAddrs)
	// Peers never learn the lane: the host's addresses (identify, the
	// DHT, login addresses) leave it out.
	for _, a := range append(s.Coord.Host().Addrs(), s.Coord.LoginAddrs()...) {
		if slices.ContainsFunc(laneAddrs, func(l ma.Multiaddr) bool { return portOf(l) == portOf(a) }) {
			t.Fatalf("the coordinator advertises its lane: %s", a)
		}
	}
	return s, lane
}

func portOf(a ma.Multiaddr) string {
	p, _ := a.ValueForProtocol(ma.P_TCP)
	return p
}

// A technician's console whose coordinator restarted finds the gate's
// places taken and its accept queue full (silent connections, each holding
// its place for a minute, stand for a storm's peers): it reconnects
// through the members' lane and is served without waiting for any of
// them, over TCP, so the coordinator still observes its TCP mapping.
func TestMemberLanePassesTheStormQueue(t *testing.T) {
	s := coordinatortest.New(t, console.Login)
	if _, err := s.Admin.WhoAmI(s.Ctx()); err != nil { // an answer tells the console the lane
		t.Fatal(err)
	}
	s.JamMainPort(t)
	// The test's context (30 s) ends before any place of the main port
	// comes back (a minute): an answer came through the lane.
	if _, err := s.Admin.WhoAmI(s.Ctx()); err != nil {
		t.Fatalf("the console during the storm: %v (gate %+v)", err, s.Coord.Handshakes())
	}
	if n := s.OnLane(t); n == 0 {
		t.Fatalf("no connection on the lane %v", s.Coord.LaneAddrs())
	}
	st := s.Coord.Handshakes()
	t.Logf("gate %+v", st)
	if st.InFlight < st.Limit {
		t.Fatalf("the main port's places came back during the test (%+v): it shows nothing", st)
	}
}

// A stranger who finds the lane: its connections are closed after the
// handshake, before any request (not even a login with a valid invite);
// silent connections fill the lane's few places and no more, and peers
// and new consoles, on the main port, are served meanwhile.
func TestStrangersOnTheMemberLane(t *testing.T) {
	s, lane := laneSite(t)
	code := s.Invite("stranger", pb.Role_ROLE_TECHNICIAN)
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h, err := mesh.NewHost(mesh.HostConfig{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	laneMA, err := manet.FromNetAddr(lane)
	if err != nil {
		t.Fatal(err)
	}
	// Only the lane: the stranger's host knows no other address.
	site := lpeer.AddrInfo{ID: s.Coord.ID(), Addrs: []ma.Multiaddr{laneMA}}
	if err := h.Connect(s.Ctx(), site); err == nil {
		_, err = control.Call(s.Ctx(), h, site.ID, &pb.Request{Body: &pb.Request_Login{Login: &pb.LoginRequest{Code: code}}})
		if err == nil {
			t.Fatal("a stranger logged in through the members' lane")
		}
	}
	coordinatortest.Eventually(t, 10*time.Second, "the stranger's connection refused", func() bool {
		return s.Coord.Handshakes().LaneRefused > 0
	})

	before := s.Coord.Handshakes()
	coordinatortest.SilentConns(t, lane, 8)
	coordinatortest.Eventually(t, 10*time.Second, "the lane's places taken", func() bool {
		return s.Coord.Handshakes().LaneWaited > before.LaneWaited
	})
	// The invite is still unused, and the main port serves while the lane
	// is full: a new console logs in with it.
	c := s.Login("stranger", code)
	if _, err := c.WhoAmI(s.Ctx()); err != nil {
		t.Fatalf("a new console while strangers fill the lane: %v", err)
	}
	st := s.Coord.Handshakes()
	t.Logf("gate %+v", st)
	if st.LaneInFlight > 2 {
		t.Fatalf("%d connections hold the lane's places at once", st.LaneInFlight)
	}
}

// TestRemovedTechnicianIsToldWhyPastTheLane: a technician's console has
// learned the members' lane; the technician is removed. The lane closes
// the key's connection after its handshake (no user's key passes it), and
// whether the console's dial saw that close or took the connection for
// made is a race: either way each new console process is told
// unknown_technician by the main port, never coordinator_unreachable
// (member.Client drops the lane and asks once more when the lane's
// connection is gone before the request left). The race was lost once in
// a CI run under load (TestAdminFlowThroughTheCLI: coordinator_unreachable
// for a removed key); on a quiet machine this test passes without the
// retry too: it guards the outcome, it does not force the race.
func TestRemovedTechnicianIsToldWhyPastTheLane(t *testing.T) {
	s := coordinatortest.New(t, console.Login)
	tech := s.User("tina", pb.Role_ROLE_TECHNICIAN)
	if _, err := tech.WhoAmI(s.Ctx()); err != nil { // an answer tells the console the lane
		t.Fatal(err)
	}
	tech.Close()
	if err := s.Admin.RemoveUser(s.Ctx(), "tina"); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		c, err := console.Open(s.Home("tina"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.WhoAmI(s.Ctx())
		c.Close()
		if catalog.CodeOf(err) != catalog.CodeUnknownTechnician {
			t.Fatalf("try %d: %v (%s), want unknown_technician", i, err, catalog.CodeOf(err))
		}
	}
}
