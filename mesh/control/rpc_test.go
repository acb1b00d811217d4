package control_test

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/control"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// TestMain checks that no test of the package leaves a goroutine behind:
// every host is closed by its test, so libp2p must have stopped too.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newHost starts a real libp2p host listening on loopback TCP and QUIC and
// closes it when the test ends.
var snakeCase = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

func newHost(tb testing.TB) host.Host {
	tb.Helper()
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		tb.Fatal(err)
	}
	h, err := mesh.NewHost(mesh.HostConfig{
		Key: key,
		ListenAddrs: []ma.Multiaddr{
			ma.StringCast("/ip4/127.0.0.1/tcp/0"),
			ma.StringCast("/ip4/127.0.0.1/udp/0/quic-v1"),
		},
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := h.Close(); err != nil {
			tb.Errorf("closing host: %v", err)
		}
	})
	return h
}

// addrsOf returns h's listen addresses that use transport, "tcp" or "quic".
func addrsOf(tb testing.TB, h host.Host, transport string) []ma.Multiaddr {
	tb.Helper()
	var out []ma.Multiaddr
	for _, a := range h.Addrs() {
		_, tcpErr := a.ValueForProtocol(ma.P_TCP)
		_, quicErr := a.ValueForProtocol(ma.P_QUIC_V1)
		switch {
		case transport == "tcp" && tcpErr == nil,
			transport == "quic" && quicErr == nil:
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		tb.Fatalf("host has no %s address in %v", transport, h.Addrs())
	}
	return out
}

// introduce tells client where server listens, on one transport or on all.
func introduce(tb testing.TB, client, server host.Host, transport string) {
	tb.Helper()
	addrs := server.Addrs()
	if transport != "" {
		addrs = addrsOf(tb, server, transport)
	}
	client.Peerstore().AddAddrs(server.ID(), addrs, peerstore.PermanentAddrTTL)
}

func testContext(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

func TestCallRoundTrip(t *testing.T) {
	server, client := newHost(t), newHost(t)
	ctx := testContext(t)

	users := &pb.UserList{Users: []*pb.User{
		{Name: "alice", Role: pb.Role_ROLE_ADMIN, PeerIds: [][]byte{[]byte(client.ID())}, CreatedUnix: 1760000000},
		{Name: "bob", Role: pb.Role_ROLE_TECHNICIAN, CreatedBy: "alice"},
	}}
	got := make(chan *pb.Request, 1)
	control.Serve(ctx, server, func(_ context.Context, _ peer.ID, req *pb.Request) (*pb.Response, error) {
		got <- req
		return &pb.Response{Body: &pb.Response_Users{Users: users}}, nil
	})
	introduce(t, client, server, "")

	req := &pb.Request{Body: &pb.Request_SettingsSet{SettingsSet: &pb.SettingsSetRequest{
		Values: map[string]string{"lost_after_days": "30", "passive_port": "5832"},
	}}}
	resp, err := control.Call(ctx, client, server.ID(), req)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(<-got, req) {
		t.Error("the handler saw another request than was sent")
	}
	if !proto.Equal(resp.GetUsers(), users) {
		t.Errorf("response body changed in transit: %v", resp)
	}
	if resp.GetError() != nil {
		t.Errorf("successful response carries an error: %v", resp.GetError())
	}
}

func TestCallEmptyResponse(t *testing.T) {
	server, client := newHost(t), newHost(t)
	ctx := testContext(t)
	control.Serve(ctx, server, func(context.Context, peer.ID, *pb.Request) (*pb.Response, error) {
		return nil, nil
	})
	introduce(t, client, server, "")
	resp, err := control.Call(ctx, client, server.ID(), &pb.Request{Body: &pb.Request_Whoami{Whoami: &pb.Empty{}}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetOk() == nil {
		t.Errorf("a nil response should arrive as ok, got %v", resp)
	}
}

func TestCallHandlerError(t *testing.T) {
	server, client := newHost(t), newHost(t)
	ctx := testContext(t)
	errs := map[string]error{
		"coded":         catalog.Errorf(catalog.CodePermissionDenied, "(administrators only)"),
		"wrapped coded": errors.Join(errors.New("deleting user"), catalog.NewError(catalog.CodeUserNotFound)),
		"plain":         errors.New("badger: disk full"),
		"internal":      catalog.Internalf("(store: %w)", errors.New("open /var/lib/jumpmesh/db/MANIFEST: permission denied")),
		"future code":   catalog.Errorf("quota_exceeded", "(12 of 10)"),
	}
	control.Serve(ctx, server, func(_ context.Context, _ peer.ID, req *pb.Request) (*pb.Response, error) {
		// The body a handler returns next to an error is not sent.
		return &pb.Response{Body: &pb.Response_Ok{Ok: &pb.Empty{}}}, errs[req.GetJumpPolicyDelete().GetName()]
	})
	introduce(t, client, server, "")

	want := map[string]struct {
		code   catalog.Code
		detail string
	}{
		"coded":         {catalog.CodePermissionDenied, "(administrators only)"},
		"wrapped coded": {catalog.CodeUserNotFound, ""},
		"plain":         {catalog.CodeInternal, catalog.InternalNote}, // the text stays in the server's log
		"internal":      {catalog.CodeInternal, catalog.InternalNote},
		"future code":   {"quota_exceeded", "Unknown error (quota_exceeded). (12 of 10)"},
	}
	for name, w := range want {
		t.Run(name, func(t *testing.T) {
			resp, err := control.Call(ctx, client, server.ID(), &pb.Request{
				Body: &pb.Request_JumpPolicyDelete{JumpPolicyDelete: &pb.NameRequest{Name: name}},
			})
			if resp != nil {
				t.Errorf("Call returned a response with its error: %v", resp)
			}
			var e *catalog.Error
			if !errors.As(err, &e) {
				t.Fatalf("got %T %v, want *mesh.Error", err, err)
			}
			if e.Code != w.code || e.Detail != w.detail {
				t.Errorf("got code %q detail %q, want %q %q", e.Code, e.Detail, w.code, w.detail)
			}
			if !errors.Is(err, catalog.NewError(w.code)) {
				t.Error("errors.Is does not match the code at the caller")
			}
		})
	}
}

func TestCallRemoteIsCaller(t *testing.T) {
	for _, transport := range []string{"tcp", "quic"} {
		t.Run(transport, func(t *testing.T) {
			server, client := newHost(t), newHost(t)
			ctx := testContext(t)
			remotes := make(chan peer.ID, 1)
			control.Serve(ctx, server, func(_ context.Context, remote peer.ID, _ *pb.Request) (*pb.Response, error) {
				remotes <- remote
				return nil, nil
			})
			introduce(t, client, server, transport)
			if _, err := control.Call(ctx, client, server.ID(), &pb.Request{Body: &pb.Request_Whoami{Whoami: &pb.Empty{}}}); err != nil {
				t.Fatal(err)
			}
			if remote := <-remotes; remote != client.ID() {
				t.Errorf("handler saw remote %s, want the caller %s", remote, client.ID())
			}

			conns := client.Network().ConnsToPeer(server.ID())
			if len(conns) != 1 {
				t.Fatalf("%d connections to the server, want 1", len(conns))
			}
			// The remote's identity comes from the secure handshake: TLS 1.3
			// on TCP (our first choice, measured faster than Noise), TLS 1.3
			// built into QUIC.
			state := conns[0].ConnState()
			switch transport {
			case "tcp":
				if state.Security != libp2ptls.ID {
					t.Errorf("TCP connection secured by %q, want %q", state.Security, libp2ptls.ID)
				}
			case "quic":
				if state.Transport != "quic-v1" {
					t.Errorf("connection transport %q, want quic-v1", state.Transport)
				}
			}
			if conns[0].RemotePeer() != server.ID() {
				t.Errorf("connection to %s, want %s", conns[0].RemotePeer(), server.ID())
			}
		})
	}
}

func TestCallUnreachable(t *testing.T) {
	client := newHost(t)
	ctx := testContext(t)

	call := func(t *testing.T, ctx context.Context, p peer.ID) error {
		t.Helper()
		resp, err := control.Call(ctx, client, p, &pb.Request{Body: &pb.Request_Whoami{Whoami: &pb.Empty{}}})
		if err == nil {
			t.Fatalf("Call succeeded: %v", resp)
		}
		if code := catalog.CodeOf(err); code != catalog.CodeCoordinatorDown {
			t.Fatalf("got code %s (%v), want %s", code, err, catalog.CodeCoordinatorDown)
		}
		if e := (*catalog.Error)(nil); !errors.As(err, &e) || e.Err == nil {
			t.Errorf("the cause of %v is lost", err)
		}
		return err
	}

	t.Run("no known address", func(t *testing.T) {
		stranger := newHost(t)
		call(t, ctx, stranger.ID())
	})
	t.Run("host closed", func(t *testing.T) {
		gone := newHost(t)
		introduce(t, client, gone, "tcp")
		if err := gone.Close(); err != nil {
			t.Fatal(err)
		}
		call(t, ctx, gone.ID())
	})
	t.Run("no control protocol", func(t *testing.T) {
		other := newHost(t)
		introduce(t, client, other, "")
		call(t, ctx, other.ID())
	})
	t.Run("handler too slow", func(t *testing.T) {
		server := newHost(t)
		release := make(chan struct{})
		t.Cleanup(func() { close(release) })
		control.Serve(ctx, server, func(context.Context, peer.ID, *pb.Request) (*pb.Response, error) {
			<-release
			return nil, nil
		})
		introduce(t, client, server, "")
		short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		call(t, short, server.ID())
	})
	t.Run("context already done", func(t *testing.T) {
		server := newHost(t)
		introduce(t, client, server, "")
		done, cancel := context.WithCancel(ctx)
		cancel()
		err := call(t, done, server.ID())
		if !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want it to wrap context.Canceled", err)
		}
	})
}

func TestServeControlSurvivesBadRequest(t *testing.T) {
	server, client := newHost(t), newHost(t)
	ctx := testContext(t)
	control.Serve(ctx, server, func(context.Context, peer.ID, *pb.Request) (*pb.Response, error) {
		return nil, nil
	})
	introduce(t, client, server, "")

	for name, raw := range map[string][]byte{
		"too large": {0xff, 0xff, 0xff, 0x7f},
		"truncated": {0x10, 0x0a},
		"not proto": {0x02, 0xff, 0xff},
	} {
		t.Run(name, func(t *testing.T) {
			s, err := client.NewStream(ctx, server.ID(), control.Protocol)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			// The server may reset the stream as soon as it has read a bad
			// header ("too large"), before the client's write or half-close:
			// an error there is the refusal, not a failure.
			if _, err := s.Write(raw); err != nil {
				return
			}
			if err := s.CloseWrite(); err != nil {
				return
			}
			_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 64)
			if n, err := s.Read(buf); err == nil || n > 0 {
				t.Errorf("server answered a bad request: %q, %v", buf[:n], err)
			}
		})
	}
	// The server still answers good requests afterwards.
	if _, err := control.Call(ctx, client, server.ID(), &pb.Request{Body: &pb.Request_Whoami{Whoami: &pb.Empty{}}}); err != nil {
		t.Fatalf("call after bad requests: %v", err)
	}
}

func TestRequestName(t *testing.T) {
	cases := []struct {
		req  *pb.Request
		want string
	}{
		{&pb.Request{}, "empty"},
		{&pb.Request{Create: true}, "empty"},
		{&pb.Request{Body: &pb.Request_Login{Login: &pb.LoginRequest{Code: "x"}}}, "login"},
		{&pb.Request{Body: &pb.Request_UserInvite{UserInvite: &pb.UserInviteRequest{Name: "bob"}}}, "user_invite"},
		{&pb.Request{Body: &pb.Request_JumpPolicyPut{JumpPolicyPut: &pb.JumpPolicy{Name: "p"}}, Create: true}, "jump_policy_put"},
		{&pb.Request{Body: &pb.Request_InstallerCheck{}}, "installer_check"},
	}
	for _, tc := range cases {
		if got := control.RequestName(tc.req); got != tc.want {
			t.Errorf("RequestName(%v) = %q, want %q", tc.req, got, tc.want)
		}
	}
}

func TestRequestNameEveryBody(t *testing.T) {
	oneof := (&pb.Request{}).ProtoReflect().Descriptor().Oneofs().ByName("body")
	if oneof == nil {
		t.Fatal("pb.Request has no oneof body")
	}
	fields := oneof.Fields()
	seen := make(map[string]bool)
	for i := range fields.Len() {
		fd := fields.Get(i)
		req := &pb.Request{}
		m := req.ProtoReflect()
		m.Set(fd, protoreflect.ValueOfMessage(m.NewField(fd).Message()))
		name := control.RequestName(req)
		if name != string(fd.Name()) {
			t.Errorf("RequestName of a %s request = %q", fd.Name(), name)
		}
		if !snakeCase.MatchString(name) || seen[name] || name == "empty" {
			t.Errorf("request name %q is not a usable metric label", name)
		}
		seen[name] = true
	}
}

func TestNewHostRequiresKey(t *testing.T) {
	h, err := mesh.NewHost(mesh.HostConfig{})
	if err == nil {
		h.Close()
		t.Fatal("NewHost without a key succeeded")
	}
}

func TestNewHostAnnounceAddrs(t *testing.T) {
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	public := ma.StringCast("/ip4/198.51.100.7/tcp/4001")
	h, err := mesh.NewHost(mesh.HostConfig{
		Key:           key,
		ListenAddrs:   []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")},
		AnnounceAddrs: []ma.Multiaddr{public},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	want, _ := peer.IDFromPrivateKey(key)
	if h.ID() != want {
		t.Errorf("host ID %s, want %s", h.ID(), want)
	}
	if addrs := h.Addrs(); len(addrs) != 1 || !addrs[0].Equal(public) {
		t.Errorf("host announces %v, want only %s", addrs, public)
	}
	if len(h.Network().ListenAddresses()) == 0 {
		t.Error("host does not listen")
	}
}

func TestNewHostDialOnly(t *testing.T) {
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := mesh.NewHost(mesh.HostConfig{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if got := h.Network().ListenAddresses(); len(got) != 0 {
		t.Errorf("dial-only host listens on %v", got)
	}
}

func TestParseMultiaddrs(t *testing.T) {
	addrs, err := mesh.ParseMultiaddrs([]string{"/ip4/127.0.0.1/tcp/1", "/ip6/::1/udp/2/quic-v1"})
	if err != nil || len(addrs) != 2 {
		t.Fatalf("ParseMultiaddrs: %v, %v", addrs, err)
	}
	_, err = mesh.ParseMultiaddrs([]string{"/ip4/127.0.0.1/tcp/1", "127.0.0.1:2"})
	if catalog.CodeOf(err) != catalog.CodeInvalidArgument {
		t.Fatalf("bad multiaddr: got %v, want %s", err, catalog.CodeInvalidArgument)
	}
	if e := err.Error(); !strings.Contains(e, "127.0.0.1:2") {
		t.Errorf("error %q does not name the bad address", e)
	}
	if addrs, err := mesh.ParseMultiaddrs(nil); err != nil || len(addrs) != 0 {
		t.Errorf("ParseMultiaddrs(nil) = %v, %v", addrs, err)
	}
}
