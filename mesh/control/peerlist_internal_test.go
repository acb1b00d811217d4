package control

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// randomList is a peer list whose records set each field decodePeerList
// reads at random (or leave it out): long, empty and non-ASCII strings,
// negative and huge numbers, NaN, several repeated values, empty
// messages; with extra, now and then a field it does not read.
func randomList(rng *rand.Rand, n int, extra bool) *pb.Response {
	strs := []string{"", "web-01", "jumpgroup:ops", "Zürich 東京 🚀", strings.Repeat("x", 300), "a\x00b", "10.0.0.1"}
	s := func() string { return strs[rng.IntN(len(strs))] }
	i64 := func() int64 {
		return []int64{0, 1, -1, math.MaxInt64, math.MinInt64, rng.Int64()}[rng.IntN(6)]
	}
	some := func() bool { return rng.IntN(3) > 0 }
	list := &pb.PeerList{Total: rng.Uint32()}
	for range n {
		v := &pb.PeerView{Status: s()}
		if some() {
			p := &pb.Peer{InstallerId: s(), PublicAddr: s(), InstalledUnix: i64(), LastSeenUnix: i64(), LastAccessUnix: i64(),
				Disabled: rng.IntN(2) == 0, UninstalledUnix: i64(), DeletedUnix: i64(), DeletedBy: s(), PassiveUnix: i64()}
			if some() {
				p.Id = []byte(s())
			}
			for range rng.IntN(3) {
				p.Jumpoints = append(p.Jumpoints, []byte(s()))
			}
			if some() {
				p.Settings = &pb.InstallerDefaults{Group: s(), Tag: s(), Comments: s(), Name: s(), JumpPolicy: s(),
					SessionPolicyPresent: s(), SessionPolicyNotPresent: s(), MaxOfflineMinutes: rng.Uint32(),
					Ephemeral: rng.IntN(2) == 0, ConnectionType: pb.ConnectionType(rng.IntN(5) - 1)}
			}
			if some() {
				p.Info = &pb.PeerInfo{Hostname: s(), Os: s(), Arch: s(), Version: s(), GatewayIp: s(), GatewayMac: s()}
				for range rng.IntN(4) {
					p.Info.PrivateIps = append(p.Info.PrivateIps, s())
				}
				for range rng.IntN(3) {
					p.Info.ConsoleUsers = append(p.Info.ConsoleUsers, s())
				}
				if extra && rng.IntN(8) == 0 {
					p.Info.Nics = []*pb.Nic{{Name: "eth0"}}
				}
			}
			if some() {
				p.Stats = &pb.PeerStats{Load1: []float64{0, 1.5, math.NaN(), math.Inf(-1), math.Copysign(0, -1)}[rng.IntN(5)], Cpus: rng.Uint32(),
					DiskUsedBytes: rng.Uint64(), DiskTotalBytes: rng.Uint64(), UptimeSeconds: rng.Uint64(), TakenUnix: i64()}
				for range rng.IntN(3) {
					p.Stats.ConsoleUsers = append(p.Stats.ConsoleUsers, s())
				}
				if extra && rng.IntN(8) == 0 {
					p.Stats.Nat = &pb.NatReport{Tcp: "easy"}
				}
			}
			v.Peer = p
		}
		if extra && rng.IntN(10) == 0 {
			v.PeerIp = "10.1.1.1"
		}
		list.Peers = append(list.Peers, v)
	}
	resp := &pb.Response{Body: &pb.Response_Peers{Peers: list}}
	for range rng.IntN(3) {
		resp.CoordinatorAddrs = append(resp.CoordinatorAddrs, []byte(s()))
	}
	for range rng.IntN(2) {
		resp.MemberLane = append(resp.MemberLane, []byte(s()))
	}
	return resp
}

// sameAsUnmarshal: unmarshalResponse returns what proto.Unmarshal does
// for raw (an error, or an equal message); fast says decodePeerList read
// it itself.
func sameAsUnmarshal(t *testing.T, raw []byte) (fast bool) {
	t.Helper()
	want := new(pb.Response)
	werr := proto.Unmarshal(raw, want)
	got, gerr := unmarshalResponse(raw)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("%x: proto.Unmarshal: %v, unmarshalResponse: %v", raw, werr, gerr)
	}
	if werr == nil && !proto.Equal(got, want) {
		t.Fatalf("%x: decoded\n%v\nproto.Unmarshal\n%v", raw, got, want)
	}
	_, fast = decodePeerList(raw)
	return fast
}

// TestDecodePeerListIsUnmarshal: the peer list's own decoder returns what
// protobuf's does for 2,000 random lists (it reads every one that holds
// only the fields it knows, and gives the others to protobuf), for 20,000
// of their bytes with a byte changed, cut short or grown, and for a list
// whose record's settings come twice (protobuf merges them), invalid
// UTF-8, and an error response.
func TestDecodePeerListIsUnmarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(16, 28))
	fast, slow := 0, 0
	var samples [][]byte
	for i := range 2000 {
		extra := i%2 == 1
		raw, err := proto.Marshal(randomList(rng, rng.IntN(6), extra))
		if err != nil {
			t.Fatal(err)
		}
		if f := sameAsUnmarshal(t, raw); f {
			fast++
		} else {
			slow++
			if !extra {
				t.Fatalf("a list of known fields only went to protobuf: %x", raw)
			}
		}
		samples = append(samples, raw)
	}
	if fast < 1000 || slow < 100 {
		t.Fatalf("%d lists read here, %d by protobuf: the test reaches too little", fast, slow)
	}
	for range 20000 {
		raw := append([]byte(nil), samples[rng.IntN(len(samples))]...)
		if len(raw) == 0 {
			continue
		}
		switch rng.IntN(3) {
		case 0:
			raw[rng.IntN(len(raw))] = byte(rng.Uint32())
		case 1:
			raw = raw[:rng.IntN(len(raw))]
		case 2:
			raw = append(raw, byte(rng.Uint32()), byte(rng.Uint32()))
		}
		sameAsUnmarshal(t, raw)
	}

	// The same record's settings twice: protobuf merges the two.
	p1, _ := proto.Marshal(&pb.Peer{Settings: &pb.InstallerDefaults{Name: "a"}})
	p2, _ := proto.Marshal(&pb.Peer{Settings: &pb.InstallerDefaults{Tag: "b"}})
	view := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), append(p1, p2...))
	list := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), view)
	merged := protowire.AppendBytes(protowire.AppendTag(nil, responsePeers, protowire.BytesType), list)
	if sameAsUnmarshal(t, merged) {
		t.Fatal("a message field twice was read here")
	}
	// A status that is not UTF-8: protobuf refuses it.
	view = protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), []byte{0xff, 0xfe})
	list = protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), view)
	bad := protowire.AppendBytes(protowire.AppendTag(nil, responsePeers, protowire.BytesType), list)
	if sameAsUnmarshal(t, bad) {
		t.Fatal("invalid UTF-8 was read here")
	}
	errResp, _ := proto.Marshal(&pb.Response{Error: &pb.Error{Code: "peer_offline"}})
	if sameAsUnmarshal(t, errResp) {
		t.Fatal("an error response was read here")
	}
}

// TestDecodedListIsTheCallersOwn: what a caller appends to a decoded
// list's repeated fields does not write over the reply's other values.
func TestDecodedListIsTheCallersOwn(t *testing.T) {
	resp := &pb.Response{Body: &pb.Response_Peers{Peers: &pb.PeerList{Peers: []*pb.PeerView{
		{Peer: &pb.Peer{Id: []byte("id-1"), Jumpoints: [][]byte{[]byte("j1")}, Info: &pb.PeerInfo{PrivateIps: []string{"10.0.0.1", "10.0.0.2"}, ConsoleUsers: []string{"root"}}}},
		{Peer: &pb.Peer{Id: []byte("id-2"), Info: &pb.PeerInfo{PrivateIps: []string{"10.0.0.3"}}}},
	}}}}
	raw, err := proto.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	before := append([]byte(nil), raw...)
	got, ok := decodePeerList(raw)
	if !ok {
		t.Fatal("not read here")
	}
	a, b := got.GetPeers().GetPeers()[0], got.GetPeers().GetPeers()[1]
	a.Peer.Id = append(a.Peer.Id, "XXXX"...)
	a.Peer.Jumpoints[0] = append(a.Peer.Jumpoints[0], "XXXX"...)
	a.Peer.Info.PrivateIps = append(a.Peer.Info.PrivateIps, "X")
	a.Peer.Info.ConsoleUsers = append(a.Peer.Info.ConsoleUsers, "X")
	b.Peer.Info.PrivateIps = append(b.Peer.Info.PrivateIps, "Y")
	if string(raw) != string(before) {
		t.Fatal("appending to the decoded list wrote into the reply's bytes")
	}
	if string(b.Peer.Id) != "id-2" || b.Peer.Info.PrivateIps[0] != "10.0.0.3" || a.Peer.Info.PrivateIps[1] != "10.0.0.2" ||
		a.Peer.Info.ConsoleUsers[0] != "root" || string(a.Peer.Jumpoints[0]) != "j1XXXX" {
		t.Fatalf("appending changed the list's other values: %v", got)
	}
}
