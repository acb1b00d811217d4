package control_test

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/control"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// sampleRequests and sampleResponses cover the shapes of control messages:
// empty, nested, repeated, maps, enums, bytes, and an error.
func sampleRequests() []*pb.Request {
	return []*pb.Request{
		{},
		{Body: &pb.Request_Whoami{Whoami: &pb.Empty{}}},
		{Body: &pb.Request_Login{Login: &pb.LoginRequest{Code: "k3Jd-92ab"}}},
		{Body: &pb.Request_UserInvite{UserInvite: &pb.UserInviteRequest{Name: "bob", Role: pb.Role_ROLE_ADMIN, ValidForSeconds: 86400}}},
		{Body: &pb.Request_GroupCreate{GroupCreate: &pb.GroupCreateRequest{
			Code: "web", DisplayName: "Web servers",
			Members: []*pb.GroupMember{{User: "alice", Role: pb.MemberRole_MEMBER_ROLE_TEAM_LEAD}, {User: "bob"}},
		}}},
		{Create: true, Body: &pb.Request_JumpPolicyPut{JumpPolicyPut: &pb.JumpPolicy{
			Name: "office-hours", TimeZone: "Europe/Berlin",
			Windows: []*pb.Window{{Days: 0b0111110, FromMinute: 8 * 60, ToMinute: 18 * 60}},
		}}},
		{Body: &pb.Request_SettingsSet{SettingsSet: &pb.SettingsSetRequest{Values: map[string]string{
			"lost_after_days": "30", "delete_after_days": "180", "passive_port": "5832",
		}}}},
		{Body: &pb.Request_InstallerCreate{InstallerCreate: &pb.InstallerCreateRequest{
			Defaults:        &pb.InstallerDefaults{Group: "jumpgroup:web", Name: "web-01", ConnectionType: pb.ConnectionType_CONNECTION_TYPE_PASSIVE},
			Overridable:     3,
			ValidForSeconds: 3600,
		}}},
		{Body: &pb.Request_InstallerCheck{InstallerCheck: &pb.InstallerCheckRequest{Key: "jmk1.AAAA.BBBB"}}},
	}
}

func sampleResponses() []*pb.Response {
	return []*pb.Response{
		{},
		{Body: &pb.Response_Ok{Ok: &pb.Empty{}}},
		{Error: catalog.ErrorToPB(catalog.Errorf(catalog.CodePeerOffline, "(web-01)"))},
		{Body: &pb.Response_Login{Login: &pb.LoginResponse{
			User:      &pb.User{Name: "alice", Role: pb.Role_ROLE_ADMIN, PeerIds: [][]byte{{0x00, 0x24, 0x08, 0x01}}},
			SiteId:    []byte{0x00, 0x24, 0x08, 0x01, 0x12, 0x20},
			SiteAddrs: [][]byte{{0x04, 127, 0, 0, 1, 0x06, 0x0f, 0xa1}},
		}}},
		{Body: &pb.Response_Settings{Settings: &pb.Settings{
			LostAfterDays: 30, DeleteAfterDays: 180, ConnectionRate: 50, PassivePort: 5832,
			UpgradeBandwidth: 1 << 40, UninstalledBehavior: pb.UninstalledBehavior_UNINSTALLED_BEHAVIOR_MARK,
		}}},
		{Body: &pb.Response_Peers{Peers: &pb.PeerList{Total: 2, Peers: []*pb.PeerView{
			{Status: "online", Peer: &pb.Peer{Id: []byte{0x00, 0x24, 0x08, 0x01}, LastSeenUnix: 1760000000, Jumpoints: [][]byte{{1, 2}},
				Settings: &pb.InstallerDefaults{Name: "web-01", Group: "jumpgroup:ops", ConnectionType: pb.ConnectionType_CONNECTION_TYPE_ACTIVE},
				Info:     &pb.PeerInfo{Hostname: "web01", PrivateIps: []string{"10.0.0.1", "fe80::1"}},
				Stats:    &pb.PeerStats{Load1: 0.5, ConsoleUsers: []string{"root"}}}},
			{Status: "offline"},
		}}}, CoordinatorAddrs: [][]byte{{0x04, 127, 0, 0, 1}}, MemberLane: [][]byte{{0x04, 127, 0, 0, 1, 0x06, 0x0f, 0xa1}}},
		{Body: &pb.Response_Installers{Installers: &pb.InstallerList{Installers: []*pb.Installer{
			{Id: "inst-1", Key: "jmk1.x.y", Body: &pb.InstallerKeyBody{Version: 1, NotBeforeUnix: 1, NotAfterUnix: -1}},
			{Id: "inst-2", RevokedUnix: 1760000000, RevokedBy: "alice"},
		}}}},
	}
}

// checkDecoded is what every successful decode must satisfy: the message
// survives EncodeDelimited and decoding again unchanged.
func checkDecoded[M proto.Message](t *testing.T, m M, decode func([]byte) (M, error)) {
	t.Helper()
	enc, err := control.EncodeDelimited(m)
	if err != nil {
		t.Fatalf("re-encoding a decoded %T: %v", m, err)
	}
	again, err := decode(enc)
	if err != nil {
		t.Fatalf("decoding a re-encoded %T: %v", m, err)
	}
	if !proto.Equal(m, again) {
		t.Fatalf("%T changed on a round trip:\n%v\n%v", m, m, again)
	}
}

// checkDecodeError is what every failed decode must satisfy. pbio's reader
// turns a panic into an error, so a panic would otherwise go unnoticed.
func checkDecodeError(t *testing.T, err error) {
	t.Helper()
	if code := catalog.CodeOf(err); code != catalog.CodeProtocol {
		t.Fatalf("decode failed with code %s, want %s: %v", code, catalog.CodeProtocol, err)
	}
	if strings.Contains(err.Error(), "panic") {
		t.Fatalf("decoder panicked: %v", err)
	}
}

func addWireSeeds[M proto.Message](f *testing.F, msgs []M) {
	for _, m := range msgs {
		enc, err := control.EncodeDelimited(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
		if len(enc) > 2 {
			f.Add(enc[:len(enc)-1]) // truncated
		}
	}
	f.Add([]byte{})
	f.Add([]byte{0x00})
	f.Add([]byte{0x80})                   // unfinished length
	f.Add([]byte{0x80, 0x00})             // non-minimal length
	f.Add([]byte{0x81, 0x80, 0x80, 0x01}) // length > MaxControlMessage
	f.Add([]byte{0x02, 0xff, 0xff})       // body is no protobuf
}

func FuzzDecodeRequest(f *testing.F) {
	addWireSeeds(f, sampleRequests())
	f.Fuzz(func(t *testing.T, raw []byte) {
		req, err := control.DecodeRequest(raw)
		if err != nil {
			checkDecodeError(t, err)
			return
		}
		checkDecoded(t, req, control.DecodeRequest)
		_ = control.RequestName(req)
	})
}

func FuzzDecodeResponse(f *testing.F) {
	addWireSeeds(f, sampleResponses())
	f.Fuzz(func(t *testing.T, raw []byte) {
		resp, err := control.DecodeResponse(raw)
		if err != nil {
			checkDecodeError(t, err)
			return
		}
		checkDecoded(t, resp, control.DecodeResponse)
		// An error on the wire always turns back into a coded error.
		if p := resp.GetError(); p != nil {
			if e := catalog.ErrorFromPB(p); catalog.CodeOf(e) == "" {
				t.Fatalf("ErrorFromPB(%v) has no code", p)
			}
		}
	})
}

func TestWireRoundTrip(t *testing.T) {
	for _, req := range sampleRequests() {
		enc, err := control.EncodeDelimited(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := control.DecodeRequest(enc)
		if err != nil {
			t.Fatalf("DecodeRequest(%v): %v", req, err)
		}
		if !proto.Equal(got, req) {
			t.Errorf("request changed: %v → %v", req, got)
		}
	}
	for _, resp := range sampleResponses() {
		enc, err := control.EncodeDelimited(resp)
		if err != nil {
			t.Fatal(err)
		}
		got, err := control.DecodeResponse(enc)
		if err != nil {
			t.Fatalf("DecodeResponse(%v): %v", resp, err)
		}
		if !proto.Equal(got, resp) {
			t.Errorf("response changed: %v → %v", resp, got)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	big := make([]byte, control.MaxMessage+1)
	tooLarge, err := control.EncodeDelimited(&pb.Request{Body: &pb.Request_InstallerCheck{
		InstallerCheck: &pb.InstallerCheckRequest{Key: string(big)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	enc, err := control.EncodeDelimited(sampleRequests()[3])
	if err != nil {
		t.Fatal(err)
	}
	for name, raw := range map[string][]byte{
		"nil":               nil,
		"unfinished length": {0x80},
		"truncated":         enc[:len(enc)-1],
		"too large":         tooLarge,
		"not protobuf":      {0x02, 0xff, 0xff},
		"invalid utf-8":     {0x05, 0x0a, 0x03, 0x0a, 0x01, 0x80}, // field 1 → field 1 = "\x80"
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := control.DecodeRequest(raw); catalog.CodeOf(err) != catalog.CodeProtocol {
				t.Errorf("DecodeRequest: got %v, want %s", err, catalog.CodeProtocol)
			}
			if _, err := control.DecodeResponse(raw); catalog.CodeOf(err) != catalog.CodeProtocol {
				t.Errorf("DecodeResponse: got %v, want %s", err, catalog.CodeProtocol)
			}
		})
	}
}

func TestDecodeAcceptsMaxSize(t *testing.T) {
	// A message of exactly MaxControlMessage bytes is still accepted.
	req := &pb.Request{Body: &pb.Request_InstallerCheck{InstallerCheck: &pb.InstallerCheckRequest{
		Key: strings.Repeat("k", control.MaxMessage-16),
	}}}
	for proto.Size(req) < control.MaxMessage {
		req.GetInstallerCheck().Key += "k"
	}
	if proto.Size(req) != control.MaxMessage {
		t.Skipf("could not size a request to exactly %d bytes", control.MaxMessage)
	}
	enc, err := control.EncodeDelimited(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := control.DecodeRequest(enc); err != nil {
		t.Fatalf("a %d-byte request was refused: %v", control.MaxMessage, err)
	}
}
