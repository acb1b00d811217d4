package relay_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	pbv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/pb"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/relay"
)

// TestEnrollThenRestart: the first run redeems the invite into the data
// directory; later runs need no invite and keep the same identity.
func TestEnrollThenRestart(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	cfg := relayConfig(t, site, "relay-1")
	r, err := relay.New(site.Ctx(), cfg)
	if err != nil {
		t.Fatalf("first run: %v", err)
	}
	id := r.ID()
	key, err := mesh.LoadKeyFile(filepath.Join(cfg.DataDir, relay.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := peer.IDFromPrivateKey(key); id != want {
		t.Fatalf("relay ID %s is not its key's %s", id, want)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	cfg.Invite, cfg.Coordinator = "", ""
	again := runRelay(t, cfg)
	if again.ID() != id {
		t.Fatalf("restarted relay is %s, was %s", again.ID(), id)
	}
	users, err := site.Admin.Users(site.Ctx())
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, u := range users {
		found = found || (u.GetName() == "relay-1" && u.GetRole() == pb.Role_ROLE_RELAY)
	}
	if !found {
		t.Fatalf("no relay user relay-1 in %v", users)
	}

	var h relay.Health
	resp, err := http.Get("http://" + again.HTTPAddr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil || resp.StatusCode != http.StatusOK || h.Status != "ok" || h.Members < 2 {
		t.Fatalf("healthz: %d %+v (%v)", resp.StatusCode, h, err)
	}
}

// TestEnrollRefusals: an unenrolled directory without an invite, and an
// invite for a technician, do not make a relay.
func TestEnrollRefusals(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	_, err := relay.New(site.Ctx(), relay.Config{DataDir: t.TempDir(), HTTPAddr: "off"})
	coordinatortest.WantCode(t, err, catalog.CodeInvalidArgument)

	inv, err := site.Admin.InviteUser(site.Ctx(), "carol", pb.Role_ROLE_TECHNICIAN, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	_, err = relay.New(site.Ctx(), relay.Config{DataDir: dir, Coordinator: site.Addr, Invite: inv.GetCode(), HTTPAddr: "off",
		Listen: []string{"/ip4/127.0.0.1/tcp/0"}})
	coordinatortest.WantCode(t, err, catalog.CodeInvalidArgument)
	// The directory now holds carol's key and says so: a second start is
	// refused at once, not at the ACL fetch.
	_, err = relay.New(site.Ctx(), relay.Config{DataDir: dir, HTTPAddr: "off", Listen: []string{"/ip4/127.0.0.1/tcp/0"}})
	coordinatortest.WantCode(t, err, catalog.CodeInvalidArgument)
}

// TestOldDataDirKeepsWorking: a data directory enrolled by an older
// release, when the relay enrolled as a console (technician.key and a
// console.json without a role), is renamed to relay.key and relay.json on
// start and the relay keeps its identity and enrollment, this start and
// the next.
func TestOldDataDirKeepsWorking(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	cfg := relayConfig(t, site, "relay-1")
	old, _, err := console.Login(site.Ctx(), cfg.DataDir, cfg.Coordinator, cfg.Invite)
	if err != nil {
		t.Fatal(err)
	}
	id := old.ID()
	old.Close()
	oldConfig := filepath.Join(cfg.DataDir, console.ConfigFile)
	var written map[string]any
	raw, err := os.ReadFile(oldConfig)
	if err == nil {
		err = json.Unmarshal(raw, &written)
	}
	if err != nil {
		t.Fatal(err)
	}
	delete(written, "role")
	raw, _ = json.Marshal(written)
	if err := os.WriteFile(oldConfig, raw, 0o600); err != nil {
		t.Fatal(err)
	}

	cfg.Invite, cfg.Coordinator = "", ""
	for run := range 2 {
		r, err := relay.New(site.Ctx(), cfg)
		if err != nil {
			t.Fatalf("start %d on the old directory: %v", run+1, err)
		}
		got := r.ID()
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if got != id {
			t.Fatalf("start %d: relay is %s, its old key was %s", run+1, got, id)
		}
		for name, want := range map[string]bool{relay.KeyFile: true, relay.ConfigFile: true, console.KeyFile: false, console.ConfigFile: false} {
			if _, err := os.Stat(filepath.Join(cfg.DataDir, name)); (err == nil) != want {
				t.Fatalf("start %d: %s exists = %v, want %v", run+1, name, err == nil, want)
			}
		}
	}
}

// TestMembersRelay: a member reserves, another member reaches it through
// the circuit, and the circuit carries a session's worth of data without
// go-libp2p's default limits (2 minutes, 128 KiB) applying.
func TestMembersRelay(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	// Members enrolled before the relay starts are in its first ACL.
	alice, bob := member(t, site, "alice"), member(t, site, "bob")
	r := runRelay(t, relayConfig(t, site, "relay-1"))
	ri := relayInfo(t, r.Addrs())
	ctx := site.Ctx()

	if err := reserve(ctx, bob, ri); err != nil {
		t.Fatalf("member reservation: %v", err)
	}
	if err := dialCircuit(ctx, alice, ri, bob.ID()); err != nil {
		t.Fatalf("member connect through the relay: %v", err)
	}
	s, err := alice.NewStream(network.WithAllowLimitedConn(ctx, "test"), bob.ID(), echoProto)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s.Conn().RemoteMultiaddr().String(), "/p2p-circuit") {
		t.Fatalf("connection is not relayed: %s", s.Conn().RemoteMultiaddr())
	}
	if _, err := s.Write([]byte("hello through the relay")); err != nil {
		t.Fatal(err)
	}
	s.CloseWrite()
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "hello through the relay" {
		t.Fatalf("echo: %q, %v", got, err)
	}

	// Without WithAllowLimitedConn: a limited connection would refuse it.
	const size = 2 << 20
	big, err := sendToSink(ctx, alice, bob.ID(), size)
	if err != nil {
		t.Fatalf("2 MiB through the relay: %v", err)
	}
	if st := big.Conn().Stat(); st.Limited {
		t.Fatalf("relayed connection is limited: %+v", st)
	}
	if n := metric(t, r.HTTPAddr(), "jumpmesh_relay_relayed_bytes_total"); n < size {
		t.Fatalf("relayed bytes %v, want at least %d", n, size)
	}
	if n := metric(t, r.HTTPAddr(), "jumpmesh_relay_circuits"); n != 1 {
		t.Fatalf("circuits gauge %v, want 1", n)
	}
	if n := metric(t, r.HTTPAddr(), "jumpmesh_relay_reservations"); n != 1 {
		t.Fatalf("reservations gauge %v, want 1", n)
	}
	if n := metric(t, r.HTTPAddr(), "libp2p_relaysvc_data_transferred_bytes_total"); n < size {
		t.Fatalf("libp2p relay metrics missing: bytes %v", n)
	}
}

// TestMaxCircuits: Resources.MaxCircuits bounds the circuits open at once
// (the resource manager refuses the relay's stream to the destination).
func TestMaxCircuits(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	dest := member(t, site, "dest")
	srcs := []host.Host{member(t, site, "src-1"), member(t, site, "src-2"), member(t, site, "src-3")}
	cfg := relayConfig(t, site, "relay-1")
	cfg.Resources.MaxCircuits = 2
	r := runRelay(t, cfg)
	ri := relayInfo(t, r.Addrs())
	ctx := site.Ctx()
	if err := reserve(ctx, dest, ri); err != nil {
		t.Fatal(err)
	}
	for i, src := range srcs {
		err := dialCircuit(ctx, src, ri, dest.ID())
		if i < 2 && err != nil {
			t.Fatalf("circuit %d: %v", i+1, err)
		}
		if i == 2 && (err == nil || !strings.Contains(err.Error(), "RESOURCE_LIMIT_EXCEEDED")) {
			t.Fatalf("third circuit with MaxCircuits 2: got %v, want RESOURCE_LIMIT_EXCEEDED", err)
		}
	}
	if n := metric(t, r.HTTPAddr(), "jumpmesh_relay_circuits"); n != 2 {
		t.Fatalf("circuits gauge %v, want 2", n)
	}
}

// TestStrangerRefused: a real libp2p host outside the site may neither
// reserve nor connect, nor be reached, and each refusal is counted.
func TestStrangerRefused(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	alice, bob, eve := member(t, site, "alice"), member(t, site, "bob"), stranger(t)
	r := runRelay(t, relayConfig(t, site, "relay-1"))
	ri := relayInfo(t, r.Addrs())
	ctx := site.Ctx()

	err := reserve(ctx, eve, ri)
	if !isStatus(err, pbv2.Status_PERMISSION_DENIED) {
		t.Fatalf("stranger reservation: got %v, want PERMISSION_DENIED", err)
	}
	if err := reserve(ctx, bob, ri); err != nil {
		t.Fatal(err)
	}
	if err := dialCircuit(ctx, eve, ri, bob.ID()); err == nil || !strings.Contains(err.Error(), "PERMISSION_DENIED") {
		t.Fatalf("stranger connect: got %v, want PERMISSION_DENIED", err)
	}
	if err := dialCircuit(ctx, alice, ri, eve.ID()); err == nil || !strings.Contains(err.Error(), "PERMISSION_DENIED") {
		t.Fatalf("connect to a stranger: got %v, want PERMISSION_DENIED", err)
	}
	for _, reason := range []string{relay.ReasonReserveNotMember, relay.ReasonConnectSrcNotMember, relay.ReasonConnectDestNotMember} {
		if n := refusals(t, r, reason); n != 1 {
			t.Errorf("refusals{%s} = %v, want 1", reason, n)
		}
	}
}

// TestRemovedUserRefusedWithinOneRefresh: once the administrator removes a
// technician, the relay drops its connections and refuses its key.
func TestRemovedUserRefusedWithinOneRefresh(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	bob := member(t, site, "bob")
	r := runRelay(t, relayConfig(t, site, "relay-1"))
	ri := relayInfo(t, r.Addrs())
	ctx := site.Ctx()
	if err := reserve(ctx, bob, ri); err != nil {
		t.Fatalf("reservation before removal: %v", err)
	}
	if err := site.Admin.RemoveUser(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	// The refresh is 100 ms; allow many periods for a loaded CI machine.
	coordinatortest.Eventually(t, 5*time.Second, "the relay to drop bob", func() bool {
		return bob.Network().Connectedness(r.ID()) != network.Connected
	})
	if err := reserve(ctx, bob, ri); !isStatus(err, pbv2.Status_PERMISSION_DENIED) {
		t.Fatalf("reservation after removal: got %v, want PERMISSION_DENIED", err)
	}
	if n := refusals(t, r, relay.ReasonReserveNotMember); n != 1 {
		t.Fatalf("refusals = %v, want 1", n)
	}
}

// TestCoordinatorDownKeepsACL: while the coordinator is away the relay
// keeps serving members with the last ACL, reports itself unhealthy after
// three periods, and recovers when the coordinator is back.
func TestCoordinatorDownKeepsACL(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	bob := member(t, site, "bob")
	r := runRelay(t, relayConfig(t, site, "relay-1"))
	ri := relayInfo(t, r.Addrs())
	site.Stop()
	// A dial to the stopped coordinator's QUIC address times out (5 s)
	// rather than being refused.
	coordinatortest.Eventually(t, 15*time.Second, "a failed refresh", func() bool {
		return metric(t, r.HTTPAddr(), "jumpmesh_relay_acl_refresh_failures_total") > 0
	})
	if err := reserve(site.Ctx(), bob, ri); err != nil {
		t.Fatalf("member reservation with the coordinator down: %v", err)
	}
	coordinatortest.Eventually(t, 5*time.Second, "healthz to turn unhealthy", func() bool { return health(t, r) == http.StatusServiceUnavailable })
	site.Start()
	coordinatortest.Eventually(t, 15*time.Second, "healthz to recover", func() bool { return health(t, r) == http.StatusOK })
}

func health(t *testing.T, r *relay.Relay) int {
	resp, err := http.Get("http://" + r.HTTPAddr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestACLSwapIsAtomic checks under -race that readers see either the old or
// the new member set while it is replaced.
func TestACLSwapIsAtomic(t *testing.T) {
	acl := relay.NewACL(prometheus.NewRegistry(), nil)
	var a, b []peer.ID
	for range 50 {
		a, b = append(a, newID(t)), append(b, newID(t))
	}
	acl.SetMembers(a)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			acl.SetMembers([][]peer.ID{a, b}[i%2])
		}
	}()
	seen := map[bool]int{}
	for ctx.Err() == nil {
		// One check sees one set: a pair from different sets is never let
		// through, even when the swap lands between its two lookups.
		if acl.AllowConnect(a[0], nil, b[0]) || acl.AllowConnect(b[1], nil, a[1]) {
			t.Fatal("a pair from different member sets was allowed")
		}
		seen[acl.AllowConnect(a[2], nil, a[3])]++
	}
	wg.Wait()
	if seen[true] == 0 || seen[false] == 0 {
		t.Fatalf("the swaps were not observed: %v", seen)
	}
	wg.Wait()
}

func newID(t *testing.T) peer.ID {
	_, pub, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func isStatus(err error, status pbv2.Status) bool {
	var re client.ReservationError
	return errors.As(err, &re) && re.Status == status
}
