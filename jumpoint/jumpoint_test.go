package jumpoint_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/jumpoint"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/member"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/tunnel"
)

type site = coordinatortest.Site[*member.Client]

// jumpointConfig invites a jumpoint named name and returns the Config of
// its first run: loopback only, metrics on a free port, a short refresh,
// the site's clock.
func jumpointConfig(t testing.TB, s *site, name string) jumpoint.Config {
	t.Helper()
	return jumpoint.Config{
		DataDir:     filepath.Join(t.TempDir(), name),
		Coordinator: s.Addr,
		Invite:      s.Invite(name, pb.Role_ROLE_JUMPOINT),
		Listen:      []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"},
		HTTPAddr:    "127.0.0.1:0",
		Refresh:     100 * time.Millisecond,
		Clock:       s.Clock,
	}
}

// runJumpoint starts a jumpoint and runs it until the test ends.
func runJumpoint(t testing.TB, cfg jumpoint.Config) *jumpoint.Jumpoint {
	t.Helper()
	j, err := jumpoint.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("starting jumpoint: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- j.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("jumpoint run: %v", err)
		}
	})
	return j
}

func newHost(t testing.TB, cfg mesh.HostConfig) host.Host {
	t.Helper()
	if cfg.Key == nil {
		key, _, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Key = key
	}
	h, err := mesh.NewHost(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// tcpInfo is the TCP address of a /p2p/-terminated address list.
func tcpInfo(t testing.TB, addrs []ma.Multiaddr) peer.AddrInfo {
	t.Helper()
	for _, a := range addrs {
		if _, err := a.ValueForProtocol(ma.P_TCP); err == nil {
			info, err := peer.AddrInfoFromP2pAddr(a)
			if err != nil {
				t.Fatal(err)
			}
			return *info
		}
	}
	t.Fatalf("no TCP address in %v", addrs)
	return peer.AddrInfo{}
}

// metric scrapes the jumpoint's /metrics for one series; 0 if absent.
func metric(t testing.TB, j *jumpoint.Jumpoint, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + j.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatalf("scraping metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
			if err != nil {
				t.Fatalf("metric %s: %v", series, err)
			}
			return v
		}
	}
	return 0
}

func refusals(t testing.TB, j *jumpoint.Jumpoint, reason string) float64 {
	return metric(t, j, `jumpmesh_jumpoint_refusals_total{reason="`+reason+`"}`)
}

// TestJumpointEndToEnd is the daemon against a real coordinator: it
// enrolls with an invite, reports itself (jumpoint_list shows it online
// with its addresses and counters), and serves a host behind it that
// dials the coordinator through it with an installer key naming it —
// libp2p end to end, over a tunnel — while that host is refused any other
// target and a stranger is refused everything, each refusal counted.
func TestJumpointEndToEnd(t *testing.T) {
	s := coordinatortest.New(t, coordinatortest.MemberLogin)
	cfg := jumpointConfig(t, s, "plant-floor")
	j := runJumpoint(t, cfg)
	if j.Name() != "plant-floor" {
		t.Errorf("name %q from the ACL, want plant-floor", j.Name())
	}
	for _, f := range []string{jumpoint.KeyFile, jumpoint.ConfigFile} {
		if _, err := os.Stat(filepath.Join(cfg.DataDir, f)); err != nil {
			t.Errorf("data directory: %v", err)
		}
	}

	var view *pb.JumpointView
	coordinatortest.Eventually(t, 10*time.Second, "jumpoint_list shows the jumpoint online", func() bool {
		resp, err := s.Admin.Call(s.Ctx(), &pb.Request{Body: &pb.Request_JumpointList{JumpointList: &pb.Empty{}}})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range resp.GetJumpoints().GetJumpoints() {
			if peer.ID(v.GetId()) == j.ID() && v.GetOnline() && len(v.GetAddrs()) > 0 && v.GetStats() != nil {
				view = v
			}
		}
		return view != nil
	})

	inst, err := s.Admin.Call(s.Ctx(), &pb.Request{Body: &pb.Request_InstallerCreate{InstallerCreate: &pb.InstallerCreateRequest{
		Defaults: &pb.InstallerDefaults{}, ValidForSeconds: 3600, Jumpoints: []string{"plant-floor"}}}})
	if err != nil {
		t.Fatalf("installer create --jumpoint plant-floor: %v", err)
	}
	key := inst.GetInstaller().GetKey()

	// A host behind the jumpoint: every TCP dial but to the jumpoint goes
	// through it, carrying the installer key; it has no QUIC.
	jinfo := tcpInfo(t, j.Addrs())
	_, jaddr, err := manet.DialArgs(jinfo.Addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	d := tunnel.NewDialer(func(address string) ([]peer.ID, *pb.TunnelOpen, bool) {
		if address == jaddr {
			return nil, nil, false
		}
		return []peer.ID{j.ID()}, &pb.TunnelOpen{InstallerKey: key}, true
	})
	behind := newHost(t, mesh.HostConfig{TCPDialer: d.ForAddr})
	d.SetHost(behind)
	behind.Peerstore().AddAddrs(j.ID(), jinfo.Addrs, time.Hour)
	coord := tcpInfo(t, []ma.Multiaddr{ma.StringCast(s.Addr)})
	if err := behind.Connect(s.Ctx(), coord); err != nil {
		t.Fatalf("the host behind the jumpoint to the coordinator: %v", err)
	}
	if got := metric(t, j, "jumpmesh_jumpoint_tunnels"); got != 1 {
		t.Errorf("tunnels open %v, want 1", got)
	}
	for _, c := range behind.Network().ConnsToPeer(coord.ID) {
		if c.RemotePeer() != coord.ID {
			t.Errorf("connected to %s, want the coordinator", c.RemotePeer())
		}
	}

	// The same key reaches nothing but the coordinator.
	_, err = tunnel.Dial(s.Ctx(), behind, j.ID(), &pb.TunnelOpen{Target: "127.0.0.1:22", InstallerKey: key})
	coordinatortest.WantCode(t, err, catalog.CodePermissionDenied)
	if refusals(t, j, jumpoint.ReasonKeyTarget) != 1 {
		t.Errorf("key_target refusals %v, want 1", refusals(t, j, jumpoint.ReasonKeyTarget))
	}

	// A stranger, with no key, is refused even the coordinator.
	stranger := newHost(t, mesh.HostConfig{})
	if err := stranger.Connect(s.Ctx(), jinfo); err != nil {
		t.Fatal(err)
	}
	_, coordAt, err := manet.DialArgs(coord.Addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	_, err = tunnel.Dial(s.Ctx(), stranger, j.ID(), &pb.TunnelOpen{Target: coordAt})
	coordinatortest.WantCode(t, err, catalog.CodePermissionDenied)
	if !strings.Contains(err.Error(), "serves only its site's members") {
		t.Errorf("refusal %q does not say whom the jumpoint serves", err)
	}
	if refusals(t, j, jumpoint.ReasonStranger) != 1 {
		t.Errorf("stranger refusals %v, want 1", refusals(t, j, jumpoint.ReasonStranger))
	}

	var h jumpoint.Health
	resp, err := http.Get("http://" + j.HTTPAddr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil || resp.StatusCode != http.StatusOK || h.Status != "ok" || h.Name != "plant-floor" {
		t.Fatalf("healthz: %d %+v (%v)", resp.StatusCode, h, err)
	}
}

// TestJumpointEnrollThenRestart: the first run redeems the invite; later
// runs need none and keep the identity; Close is idempotent; a directory
// enrolled with another role's invite is refused.
func TestJumpointEnrollThenRestart(t *testing.T) {
	s := coordinatortest.New(t, coordinatortest.MemberLogin)
	cfg := jumpointConfig(t, s, "jp-1")
	j, err := jumpoint.New(s.Ctx(), cfg)
	if err != nil {
		t.Fatalf("first run: %v", err)
	}
	id := j.ID()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	cfg.Invite, cfg.Coordinator = "", ""
	if again := runJumpoint(t, cfg); again.ID() != id {
		t.Fatalf("restarted jumpoint is %s, was %s", again.ID(), id)
	}

	wrong := jumpointConfig(t, s, "jp-2")
	wrong.Invite = s.Invite("alice", pb.Role_ROLE_TECHNICIAN)
	_, err = jumpoint.New(s.Ctx(), wrong)
	coordinatortest.WantCode(t, err, catalog.CodeInvalidArgument)

	_, err = jumpoint.New(s.Ctx(), jumpoint.Config{DataDir: t.TempDir()})
	coordinatortest.WantCode(t, err, catalog.CodeInvalidArgument)
}

// TestRemovedTechnicianCutOff: a technician removed by an administrator
// loses its connection to the jumpoint (and so its tunnels) within one
// ACL refresh.
func TestRemovedTechnicianCutOff(t *testing.T) {
	s := coordinatortest.New(t, coordinatortest.MemberLogin)
	s.User("bob", pb.Role_ROLE_TECHNICIAN)
	key, err := coordinatortest.MemberFiles(s.Home("bob")).LoadKey()
	if err != nil {
		t.Fatal(err)
	}
	j := runJumpoint(t, jumpointConfig(t, s, "plant-floor"))
	bob := newHost(t, mesh.HostConfig{Key: key})
	if err := bob.Connect(s.Ctx(), tcpInfo(t, j.Addrs())); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Admin.Call(s.Ctx(), &pb.Request{Body: &pb.Request_UserRemove{UserRemove: &pb.NameRequest{Name: "bob"}}}); err != nil {
		t.Fatal(err)
	}
	coordinatortest.Eventually(t, 10*time.Second, "the jumpoint closes the removed technician's connection", func() bool {
		return bob.Network().Connectedness(j.ID()) != network.Connected
	})
}
