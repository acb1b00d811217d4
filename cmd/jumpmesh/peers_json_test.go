package main

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// lsTestViews are views as a coordinator sends them: one with every field
// set, one with none, then n random ones whose strings mix ASCII, what
// JSON escapes (quotes, backslashes, control characters, <, >, &, U+2028),
// other scripts and invalid UTF-8, with extreme numbers.
func lsTestViews(t testing.TB, n int) []*pb.PeerView {
	rng := rand.New(rand.NewPCG(7, 8))
	id := func() []byte {
		_, pub, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			t.Fatal(err)
		}
		p, err := peer.IDFromPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return []byte(p)
	}
	pieces := []string{"web", "Ünïcödé", "東京", "🚀", `"q"`, `back\slash`, "<b>&amp;</b>", "\u2028\u2029", "\x00\x01\x1f\x7f",
		"\b\f\n\r\t", "\xff\xfe", "\xe2\x82", " ", "-", "0", "é"}
	str := func() string {
		var b strings.Builder
		for range rng.IntN(4) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		return b.String()
	}
	strs := func() []string {
		if rng.IntN(3) == 0 {
			return nil
		}
		out := make([]string, rng.IntN(3))
		for i := range out {
			out[i] = str()
		}
		return out
	}
	u64s := []uint64{0, 1, 1 << 32, 1<<53 + 1, math.MaxUint64}
	loads := []float64{0, math.Copysign(0, -1), 0.25, 1.5, 123.456, 1e-7, 9.99e-7, 1e-6, 1e20, 1e21, 1.5e300, 5e-324, math.MaxFloat64, -2.75, 1.0 / 3}
	times := []int64{0, 1, 1_700_000_000, -1, 253402300799}
	full := &pb.PeerView{Status: "online", Peer: &pb.Peer{Id: id(), InstallerId: "inst-1", PublicAddr: "/ip4/198.51.100.7/tcp/4001",
		InstalledUnix: 1_700_000_000, LastSeenUnix: 1_700_000_100, LastAccessUnix: 1_700_000_200, Jumpoints: [][]byte{id(), id()},
		Settings: &pb.InstallerDefaults{Name: "web-01", Tag: "linux", Comments: "rack <4> & \"row\" c", Group: "jumpgroup:ops",
			JumpPolicy: "p1", SessionPolicyPresent: "sp1", SessionPolicyNotPresent: "sp2", MaxOfflineMinutes: math.MaxUint32,
			ConnectionType: pb.ConnectionType_CONNECTION_TYPE_PASSIVE},
		Info: &pb.PeerInfo{Hostname: "HOST01", Os: "linux", Arch: "amd64", Version: "1.2.3", PrivateIps: []string{"10.0.0.1", "fd00::1"},
			GatewayIp: "10.0.0.254", GatewayMac: "02:00:00:00:00:fe", ConsoleUsers: []string{"info-user"},
			Nics: []*pb.Nic{{Name: "eth0", Mac: "02:00:00:00:00:01", Addrs: []string{"10.0.0.1/24"}, DefaultRoute: true}, {Name: "lo"}}},
		Stats: &pb.PeerStats{Load1: 0.42, Cpus: 8, DiskUsedBytes: math.MaxUint64, DiskTotalBytes: 1 << 40, UptimeSeconds: 86400,
			TakenUnix: 1_700_000_050, ConsoleUsers: []string{"alice", "bob"},
			Nat: &pb.NatReport{Tcp: "endpoint-independent", Udp: "random", PortPreserving: true, NoNat: true, PublicAddr: "198.51.100.7",
				Observers: 3, Hairpinning: pb.Hairpinning_HAIRPINNING_NO, UpdatedUnix: 1_700_000_060}}}}
	full.Jumpoints = []*pb.JumpointRef{{Id: full.Peer.Jumpoints[0], Name: "jp-east"}}
	views := []*pb.PeerView{full, {}, {Peer: &pb.Peer{}}}
	for range n {
		v := &pb.PeerView{Status: str(), Peer: &pb.Peer{Id: id(), InstallerId: str(), PublicAddr: str(),
			InstalledUnix: times[rng.IntN(len(times))], LastSeenUnix: times[rng.IntN(len(times))], LastAccessUnix: times[rng.IntN(len(times))]}}
		if rng.IntN(4) > 0 {
			v.Peer.Settings = &pb.InstallerDefaults{Name: str(), Tag: str(), Comments: str(), Group: str(), JumpPolicy: str(),
				SessionPolicyPresent: str(), SessionPolicyNotPresent: str(), MaxOfflineMinutes: uint32(u64s[rng.IntN(4)]),
				ConnectionType: pb.ConnectionType(rng.IntN(4))}
		}
		if rng.IntN(4) > 0 {
			v.Peer.Info = &pb.PeerInfo{Hostname: str(), Os: str(), Arch: str(), Version: str(), PrivateIps: strs(), GatewayIp: str(),
				GatewayMac: str(), ConsoleUsers: strs()}
			for range rng.IntN(3) {
				v.Peer.Info.Nics = append(v.Peer.Info.Nics, &pb.Nic{Name: str(), Mac: str(), Addrs: strs(), DefaultRoute: rng.IntN(2) == 0})
			}
		}
		if rng.IntN(2) == 0 {
			v.Peer.Stats = &pb.PeerStats{Load1: loads[rng.IntN(len(loads))], Cpus: uint32(u64s[rng.IntN(4)]), DiskUsedBytes: u64s[rng.IntN(5)],
				DiskTotalBytes: u64s[rng.IntN(5)], UptimeSeconds: u64s[rng.IntN(5)], TakenUnix: times[rng.IntN(len(times))], ConsoleUsers: strs()}
			if rng.IntN(2) == 0 {
				v.Peer.Stats.Nat = &pb.NatReport{Tcp: str(), Udp: str(), PortPreserving: rng.IntN(2) == 0, NoNat: rng.IntN(2) == 0,
					PublicAddr: str(), Observers: uint32(u64s[rng.IntN(4)]), Hairpinning: pb.Hairpinning(rng.IntN(4)), UpdatedUnix: times[rng.IntN(len(times))]}
			}
		}
		if rng.IntN(5) == 0 {
			v.Peer.Jumpoints = [][]byte{id(), []byte(str())}
			v.Jumpoints = []*pb.JumpointRef{{Id: v.Peer.Jumpoints[0], Name: str()}}
		}
		views = append(views, v)
	}
	return views
}

// TestPeerListJSONIsEncodingJSON: `ls --json` (console.PeerListJSON,
// written from the views) prints what encoding/json printed for the CLI's
// []peerView, byte for byte: records with every field set, with none, and
// 2,000 random ones (escapes, invalid UTF-8, other scripts, extreme
// numbers, absent messages), jumpoints named by the CLI or not; an empty
// list is [].
func TestPeerListJSONIsEncodingJSON(t *testing.T) {
	views := lsTestViews(t, 2000)
	old := func(views []*pb.PeerView, named map[int][]string) string {
		pvs := make([]peerView, 0, len(views))
		for i, v := range views {
			pv := newPeerView(v)
			if jp, ok := named[i]; ok {
				pv.Jumpoints = jp
			}
			pvs = append(pvs, pv)
		}
		var b bytes.Buffer
		if err := printJSON(&b, pvs); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	named := map[int][]string{0: {"jp-east", "12D3KooW…abcdef"}}
	for i, v := range views {
		if len(v.GetPeer().GetJumpoints()) > 0 && i%2 == 1 {
			named[i] = []string{fmt.Sprintf("jp-%d", i), "<&>"}
		}
	}
	jumpoints := func(i int) []string {
		if jp, ok := named[i]; ok {
			return jp
		}
		return console.ViewJumpoints(views[i])
	}
	for _, n := range []int{0, 1, 2, 3, len(views)} {
		want := old(views[:n], named)
		got := string(console.PeerListJSON(nil, views[:n], jumpoints))
		if got != want {
			g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
			for i := range min(len(g), len(w)) {
				if g[i] != w[i] {
					t.Fatalf("%d views: line %d is\n%q, encoding/json printed\n%q", n, i+1, g[i], w[i])
				}
			}
			t.Fatalf("%d views: %d lines, encoding/json printed %d", n, len(g), len(w))
		}
	}
	if got := string(console.PeerListJSON(nil, views[:1], nil)); got != old(views[:1], nil) {
		t.Fatalf("jumpoints as the view names them:\n%s\nencoding/json printed\n%s", got, old(views[:1], nil))
	}
}

// TestPeerListJSONNotANumber: a peer's own report of its load may be NaN
// or infinite (a compromised peer's, or a broken one's): encoding/json
// refused it and `ls --json` failed for every technician listing that
// peer; the list is printed, the load null.
func TestPeerListJSONNotANumber(t *testing.T) {
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		views := []*pb.PeerView{{Status: "online", Peer: &pb.Peer{Settings: &pb.InstallerDefaults{Name: "bad"}, Stats: &pb.PeerStats{Load1: f}}},
			{Status: "online", Peer: &pb.Peer{Settings: &pb.InstallerDefaults{Name: "good"}}}}
		got := string(console.PeerListJSON(nil, views, nil))
		if !strings.Contains(got, `"load1": null`) || !strings.Contains(got, `"name": "good"`) {
			t.Fatalf("load %v:\n%s", f, got)
		}
	}
}

// TestPeerTableIsTheTable: ls's table (console.WritePeerTable) is the
// rows ls built and aligned with text/tabwriter before, byte for byte,
// with and without a jumpoint column.
func TestPeerTableIsTheTable(t *testing.T) {
	views := lsTestViews(t, 500)
	old := func(w io.Writer, peers []*pb.PeerView, named func(int) []string) {
		var views []peerView
		behind := false
		for i, p := range peers {
			v := newPeerView(p)
			if named != nil {
				v.Jumpoints = named(i)
			}
			views = append(views, v)
			behind = behind || len(p.GetPeer().GetJumpoints()) > 0
		}
		rows := [][]string{{"NAME", "STATUS", "JUMP GROUP", "TAG", "PRIVATE IP", "PUBLIC IP", "CONSOLE USER", "LAST SEEN", "ID"}}
		if behind {
			rows[0] = append(rows[0], "JUMPOINT")
		}
		for i, v := range views {
			ip := ""
			if len(v.PrivateIPs) > 0 {
				ip = v.PrivateIPs[0]
			}
			row := []string{v.Name, v.Status, v.Group, orDash(v.Tag), orDash(ip), orDash(v.PublicIP),
				orDash(strings.Join(v.ConsoleUsers, ",")), lastSeen(peers[i]), shortID(v.ID)}
			if behind {
				row = append(row, orDash(strings.Join(v.Jumpoints, ",")))
			}
			rows = append(rows, row)
		}
		table(w, rows)
		fmt.Fprintf(w, "%d peer(s)\n", len(views))
	}
	named := func(i int) []string {
		if i%3 == 0 {
			return []string{"jp", ""}
		}
		return console.ViewJumpoints(views[i])
	}
	// Tables of views whose cells hold nothing text/tabwriter reads as
	// layout but tabs and newlines are aligned by the console itself; the
	// others by tabwriter.
	var noJumpoints, plain, plainNoJumpoints []*pb.PeerView
	for _, v := range views {
		var row bytes.Buffer
		old(&row, []*pb.PeerView{v}, nil)
		isPlain := !strings.ContainsAny(row.String(), "\v\f\r") && !strings.Contains(row.String(), "\xff")
		if isPlain {
			plain = append(plain, v)
		}
		if len(v.GetPeer().GetJumpoints()) == 0 {
			noJumpoints = append(noJumpoints, v)
			if isPlain {
				plainNoJumpoints = append(plainNoJumpoints, v)
			}
		}
	}
	if len(plain) < 20 || len(plainNoJumpoints) < 20 {
		t.Fatalf("%d plain views, %d without jumpoints: too few to test the aligning", len(plain), len(plainNoJumpoints))
	}
	for _, c := range []struct {
		views []*pb.PeerView
		named func(int) []string
	}{{views, named}, {views, nil}, {noJumpoints, nil}, {plain, nil}, {plainNoJumpoints, nil}, {plain[:1], nil}, {nil, nil}} {
		var got, want bytes.Buffer
		if err := console.WritePeerTable(&got, c.views, c.named); err != nil {
			t.Fatal(err)
		}
		old(&want, c.views, c.named)
		if got.String() != want.String() {
			t.Fatalf("%d views: the table is\n%s\nwas\n%s", len(c.views), got.String(), want.String())
		}
	}
}

// BenchmarkLsJSON1000 is `ls --json`'s printing of 1,000 views (the
// search workload's worst list, every field of a stored record):
// console.PeerListJSON against encoding/json over peerView as before.
func BenchmarkLsJSON1000(b *testing.B) {
	views := lsTestViews(b, 1000)
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if err := console.WritePeerListJSON(io.Discard, views, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			pvs := make([]peerView, 0, len(views))
			for _, v := range views {
				pvs = append(pvs, newPeerView(v))
			}
			if err := printJSON(io.Discard, pvs); err != nil {
				b.Fatal(err)
			}
		}
	})
}
