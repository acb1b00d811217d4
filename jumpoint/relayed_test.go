package jumpoint_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/jumpoint"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/installerkey"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/tunnel"
	peerd "github.com/jumpmesh/jumpmesh/peer"
	"github.com/jumpmesh/jumpmesh/relay"
)

// consoleSite is a site whose members log in with consoles.
type consoleSite = coordinatortest.Site[*console.Client]

// startRelay enrolls and runs a site relay on loopback.
func startRelay(t *testing.T, s *consoleSite, name string) *relay.Relay {
	t.Helper()
	r, err := relay.New(context.Background(), relay.Config{DataDir: filepath.Join(t.TempDir(), name), Coordinator: s.Addr,
		Invite: s.Invite(name, pb.Role_ROLE_RELAY), Listen: []string{"/ip4/127.0.0.1/tcp/0"}, HTTPAddr: "off",
		Refresh: 200 * time.Millisecond})
	if err != nil {
		t.Fatalf("relay: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; r.Close() })
	return r
}

// circuitsVia are the addresses among addrs that are circuits through
// relay r.
func circuitsVia(addrs []ma.Multiaddr, r peer.ID) []ma.Multiaddr {
	var out []ma.Multiaddr
	for _, a := range addrs {
		if v, err := a.ValueForProtocol(ma.P_P2P); err == nil && v == r.String() && mesh.IsCircuit(a) {
			out = append(out, a)
		}
	}
	return out
}

// installBehind installs and runs a peer named name from an installer key
// naming the jumpoint, on loopback, until the test ends; it returns its ID
// and the key.
func installBehind(t *testing.T, s *consoleSite, name, jumpointName string) (peer.ID, *installerkey.Key) {
	t.Helper()
	resp, err := s.Admin.Call(s.Ctx(), &pb.Request{Body: &pb.Request_InstallerCreate{InstallerCreate: &pb.InstallerCreateRequest{
		Defaults: &pb.InstallerDefaults{Name: name}, ValidForSeconds: 3600, Jumpoints: []string{jumpointName}}}})
	if err != nil {
		t.Fatalf("installer create --jumpoint %s: %v", jumpointName, err)
	}
	key, err := installerkey.Parse(resp.GetInstaller().GetKey())
	if err != nil {
		t.Fatal(err)
	}
	uid := 1000
	dir := filepath.Join(t.TempDir(), "jumpmesh")
	if _, err := peerd.Install(peerd.InstallOptions{Key: key.Raw, Dir: dir, Binary: os.Args[0], Clock: s.Clock, EUID: &uid}); err != nil {
		t.Fatal(err)
	}
	d, err := peerd.Open(peerd.RunConfig{Dir: dir, Version: "test", Clock: s.Clock, Listen: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; d.Close() })
	return d.ID(), key
}

func waitOnline(t *testing.T, s *consoleSite, id peer.ID) {
	t.Helper()
	coordinatortest.Eventually(t, 20*time.Second, "the peer online through the jumpoint", func() bool {
		v, err := s.Admin.Peer(s.Ctx(), id.String())
		return err == nil && v.GetStatus() == "online"
	})
}

// execOn runs echo word on the jump's peer and checks its output.
func execOn(ctx context.Context, t *testing.T, j *console.Jump, word string) {
	t.Helper()
	ch, err := j.Open(ctx, &pb.ChannelOpen{Kind: &pb.ChannelOpen_Exec{Exec: &pb.ExecOpen{Argv: []string{"echo", word}}}})
	if err != nil {
		t.Fatalf("jump through the jumpoint: %v", err)
	}
	defer ch.Close()
	var out bytes.Buffer
	st, err := console.Exec(ctx, ch, console.ExecIO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out})
	if err != nil || st.GetCode() != 0 || out.String() != word+"\n" {
		t.Fatalf("exec: %q, %v, %v", out.String(), st, err)
	}
}

// onlyRelayed fails unless every connection of the console's main host to
// the jumpoint is a circuit through the relay.
func onlyRelayed(t *testing.T, c *console.Client, j *jumpoint.Jumpoint, r *relay.Relay) {
	t.Helper()
	conns := c.Host().Network().ConnsToPeer(j.ID())
	if len(conns) == 0 {
		t.Fatal("the console's main host has no connection to the jumpoint")
	}
	for _, cn := range conns {
		if len(circuitsVia([]ma.Multiaddr{cn.RemoteMultiaddr()}, r.ID())) == 0 {
			t.Fatalf("the console reached the jumpoint at %s, not through the relay %s", cn.RemoteMultiaddr(), r.ID())
		}
	}
}

// TestConsoleReachesAJumpointOnlyThroughARelay: a jumpoint behind a NAT
// keeps a reservation on the site's relay and reports the circuit through
// it; the coordinator hands that circuit to consoles (and puts it in
// installer keys, which the peer behind the jumpoint ignores: it reaches
// the jumpoint on its network). A console that has nothing but that
// circuit — no direct address of the jumpoint, no relay list — reaches the
// jumpoint through the relay, and a jump to the peer behind it runs end to
// end over the relayed connection, the path saying via jumpoint. Then the
// same with the site's relay list alone (the console builds the circuit).
// A tunnel over the relayed connection without a grant is refused: the
// relay carries bytes, the jumpoint's rules still decide; a stranger does
// not get through the relay at all. The peer stays online throughout.
func TestConsoleReachesAJumpointOnlyThroughARelay(t *testing.T) {
	s := coordinatortest.New(t, console.Login)
	r := startRelay(t, s, "relay-1")
	cfg := jumpoint.Config{DataDir: filepath.Join(t.TempDir(), "plant-a"), Coordinator: s.Addr,
		Invite: s.Invite("plant-a", pb.Role_ROLE_JUMPOINT), Listen: []string{"/ip4/127.0.0.1/tcp/0"},
		HTTPAddr: "off", Refresh: 100 * time.Millisecond, Clock: s.Clock}
	jp := runJumpoint(t, cfg)

	// The jumpoint reserves on the relay (once the relay's ACL knows it)
	// and reports the circuit; jumpoint list shows it.
	coordinatortest.Eventually(t, 30*time.Second, "the jumpoint's circuit through the relay reported", func() bool {
		if len(circuitsVia(jp.Addrs(), r.ID())) == 0 {
			return false
		}
		resp, err := s.Admin.Call(s.Ctx(), &pb.Request{Body: &pb.Request_JumpointList{JumpointList: &pb.Empty{}}})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range resp.GetJumpoints().GetJumpoints() {
			if v.GetName() == "plant-a" && len(circuitsVia(mesh.DecodeAddrs(v.GetAddrs()), r.ID())) > 0 {
				return true
			}
		}
		return false
	})

	id, key := installBehind(t, s, "plc-01", "plant-a")
	if len(key.Jumpoints) != 1 || len(circuitsVia(key.Jumpoints[0].Addrs, r.ID())) == 0 {
		t.Fatalf("installer key jumpoints %+v: want plant-a with its circuit through %s", key.Jumpoints, r.ID())
	}
	waitOnline(t, s, id)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	jumpRelayed := func(circuitsOnly bool) *console.Jump {
		t.Helper()
		j, err := s.Admin.Jump(ctx, "plc-01", grant.Exec)
		if err != nil {
			t.Fatal(err)
		}
		if len(j.Jumpoints) != 1 || peer.ID(j.Jumpoints[0].GetId()) != jp.ID() {
			t.Fatalf("jump response jumpoints %v, want plant-a", j.Jumpoints)
		}
		if circuitsOnly {
			// The console has the circuits the jumpoint reported, and
			// nothing else to reach it by.
			ref := j.Jumpoints[0]
			circuits := circuitsVia(mesh.DecodeAddrs(ref.GetAddrs()), r.ID())
			if len(circuits) == 0 {
				t.Fatalf("the jump response's jumpoint has no circuit through the relay: %v", mesh.DecodeAddrs(ref.GetAddrs()))
			}
			ref.Addrs, j.Relays = mesh.EncodeAddrs(circuits), nil
		} else {
			if len(j.Relays) == 0 {
				t.Fatal("the jump response names no relay")
			}
			j.ForceRelay = true
		}
		return j
	}

	j := jumpRelayed(true)
	execOn(ctx, t, j, "relayed")
	if p := j.Path(); p.Kind != console.PathJumpoint || p.Jumpoint != "plant-a" || !strings.HasPrefix(p.String(), "via jumpoint plant-a") {
		t.Errorf("path %+v (%q), want via jumpoint plant-a", p, p)
	}
	onlyRelayed(t, s.Admin, jp, r)
	if s.Admin.Host().Network().Connectedness(id) == network.Connected {
		t.Error("the console's main host connected to the peer itself")
	}

	// Over that relayed connection, a tunnel without a grant is refused.
	_, err := tunnel.Dial(ctx, s.Admin.Host(), jp.ID(), &pb.TunnelOpen{Target: "127.0.0.1:22"})
	if !catalog.HasCode(err, catalog.CodePermissionDenied) {
		t.Errorf("a tunnel without a grant over the relayed connection: %v, want permission_denied", err)
	}
	j.Close()

	// A stranger (no member of the site) cannot even reach the jumpoint
	// through the relay: the relay's ACL refuses the circuit.
	stranger := newHost(t, mesh.HostConfig{RelayClient: true})
	for _, c := range circuitsVia(jp.Addrs(), r.ID()) {
		info, err := peer.AddrInfoFromP2pAddr(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := stranger.Connect(network.WithAllowLimitedConn(ctx, "test"), *info); err == nil {
			t.Fatalf("a stranger reached the jumpoint through the relay at %s", c)
		}
	}

	// A new console connection, with the site's relay list alone. The
	// console forgets the jumpoint's direct addresses, which identify told
	// it over the relayed connection: libp2p dials every address it knows
	// of a peer, and behind real NATs those would not answer.
	if err := s.Admin.Host().Network().ClosePeer(jp.ID()); err != nil {
		t.Fatal(err)
	}
	s.Admin.Host().Peerstore().ClearAddrs(jp.ID())
	j = jumpRelayed(false)
	execOn(ctx, t, j, "again")
	if p := j.Path(); p.Kind != console.PathJumpoint || p.Jumpoint != "plant-a" {
		t.Errorf("path %+v, want via jumpoint plant-a", p)
	}
	onlyRelayed(t, s.Admin, jp, r)
	j.Close()

	waitOnline(t, s, id)
	if st := jp.Stats(); st.GetPeersConnected() != 1 {
		t.Errorf("jumpoint stats %v: want the peer connected", st)
	}
	if !slices.ContainsFunc(jp.Addrs(), func(a ma.Multiaddr) bool { return !mesh.IsCircuit(a) }) {
		t.Errorf("jumpoint addresses %v: its direct address went missing", jp.Addrs())
	}
}
