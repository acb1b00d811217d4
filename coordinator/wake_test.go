package coordinator_test

import (
	"bufio"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/channel"
	"github.com/jumpmesh/jumpmesh/mesh/control"
	"github.com/jumpmesh/jumpmesh/mesh/frame"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/wake"
)

// Gateways of the tests' LANs. lanB has lanA's gateway IP behind another
// router (another MAC): it is another network.
var (
	lanA = [2]string{"192.168.1.1", "aa:aa:aa:aa:aa:01"}
	lanB = [2]string{"192.168.1.1", "bb:bb:bb:bb:bb:01"}
	lanC = [2]string{"10.9.0.1", "cc:cc:cc:cc:cc:01"}
)

// wakeSite is a site with an installer, and peers that serve the wake
// protocol on their own libp2p hosts.
type wakeSite struct {
	*harness
	key string
}

func newWakeSite(t *testing.T) *wakeSite {
	h := newHarness(t)
	return &wakeSite{harness: h, key: h.Installer(&pb.InstallerDefaults{}, 0, time.Hour).GetKey()}
}

// wakePeer is a peer (its own libp2p host, the peer protocol spoken by
// hand) that serves wake.Protocol as a real waker would, minus the
// packets: it checks every order's signature against the site
// (wake.Verify), keeps the bodies and reports one send.
type wakePeer struct {
	*rawPeer
	*orderLog
	name string
	info *pb.PeerInfo
}

// orderLog serves wake.Protocol on a host, keeping the verified orders.
type orderLog struct {
	mu     sync.Mutex
	orders []*pb.WakeBody
}

func serveOrders(h host.Host, site peer.ID) *orderLog {
	l := &orderLog{}
	h.SetStreamHandler(wake.Protocol, func(st network.Stream) { l.serveWake(site, st) })
	return l
}

func (s *wakeSite) peer(name string, gw [2]string, mac, ip string) *wakePeer {
	s.T.Helper()
	info := &pb.PeerInfo{Hostname: name, Protocols: []string{string(channel.Protocol)}, GatewayIp: gw[0], GatewayMac: gw[1],
		PrivateIps: []string{ip}, Nics: []*pb.Nic{{Name: "eth0", Mac: mac, Addrs: []string{ip + "/24"}, DefaultRoute: true}}}
	p := &wakePeer{rawPeer: newRawPeer(s.T.(*testing.T), s.Site), name: name, info: info}
	p.orderLog = serveOrders(p.h, s.coord.ID())
	return p
}

func (p *orderLog) serveWake(site peer.ID, st network.Stream) {
	ms := frame.NewStream(st, 4096)
	var order pb.WakeOrder
	if err := ms.Read(&order, 10*time.Second); err != nil {
		st.Reset()
		return
	}
	report := &pb.WakeReport{Sent: []string{"eth0 udp 255.255.255.255:9"}}
	body, err := wake.Verify(order.GetCommand(), site, "", time.Now())
	if err != nil {
		report = &pb.WakeReport{Error: catalog.ErrorToPB(catalog.Errorf(catalog.CodeWakeFailed, "(%v)", err))}
	} else {
		p.mu.Lock()
		p.orders = append(p.orders, body)
		p.mu.Unlock()
	}
	_ = ms.Write(report, 10*time.Second)
	_ = st.Close()
}

func (p *orderLog) ordered() []*pb.WakeBody {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.orders)
}

// online says hello with the peer's facts and stays connected.
func (p *wakePeer) online(s *wakeSite) *wakePeer {
	s.T.Helper()
	if down := p.helloWith(s.Site, &pb.PeerHello{InstallerKey: s.key, Info: p.info}); down.GetWelcome() == nil {
		s.T.Fatalf("%s not welcomed: %v", p.name, down)
	}
	return p
}

// asleep connects once (so the coordinator knows its facts), then goes.
func (p *wakePeer) asleep(s *wakeSite) *wakePeer {
	s.T.Helper()
	p.online(s)
	p.ms.Reset()
	coordinatorWaitOffline(s.T.(*testing.T), s.harness, p.id())
	return p
}

func (s *wakeSite) tick() { s.clock.Advance(time.Second) }

func wakerNames(r *pb.WakeResponse) []string {
	var out []string
	for _, w := range r.GetWakers() {
		out = append(out, w.GetName())
	}
	return out
}

// TestWakeAsksSameGatewayPeersOnly: the wakers are online peers behind the
// target's gateway (IP and MAC), at most two, the most recently seen
// first; a peer behind another gateway, even one with the same IP, is
// never asked. The command reaches them signed by the site, for the
// target, with its MAC, gateway, IPs and password; the attempt is audited
// and counted.
func TestWakeAsksSameGatewayPeersOnly(t *testing.T) {
	s := newWakeSite(t)
	ctx := s.ctx()
	target := s.peer("pc-01", lanA, "02:00:00:00:00:01", "192.168.1.10").asleep(s)
	var neighbours []*wakePeer
	for i, name := range []string{"pc-02", "pc-03", "pc-04"} {
		s.tick()
		neighbours = append(neighbours, s.peer(name, lanA, fmt.Sprintf("02:00:00:00:00:%02x", i+2), fmt.Sprintf("192.168.1.%d", 11+i)).online(s))
	}
	s.tick()
	other := s.peer("pc-b1", lanB, "02:00:00:00:01:01", "192.168.1.10").online(s)
	far := s.peer("pc-c1", lanC, "02:00:00:00:02:01", "10.9.0.5").online(s)

	resp, err := s.admin.Wake(ctx, "pc-01", []byte{1, 2, 3, 4, 5, 6})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := wakerNames(resp), []string{"pc-04", "pc-03"}; !slices.Equal(got, want) {
		t.Fatalf("wakers %v, want %v (the two most recently seen on the same gateway)", got, want)
	}
	if resp.GetMethod() != coordinator.WakeMethodWOL || resp.GetNextAttemptUnixMillis() != testStart.Add(4*time.Second+wake.Cooldown).UnixMilli() {
		t.Errorf("method %q, next attempt %d", resp.GetMethod(), resp.GetNextAttemptUnixMillis())
	}
	for _, w := range resp.GetWakers() {
		if w.GetKind() != "peer" || len(w.GetSent()) != 1 || w.GetError() != nil {
			t.Errorf("waker %s: kind %q sent %v error %v", w.GetName(), w.GetKind(), w.GetSent(), w.GetError())
		}
	}
	for _, p := range []*wakePeer{neighbours[1], neighbours[2]} {
		orders := p.ordered()
		if len(orders) != 1 {
			t.Fatalf("%s got %d orders", p.name, len(orders))
		}
		b := orders[0]
		if peer.ID(b.GetTargetId()) != target.id() || !slices.Equal(b.GetMacs(), []string{"02:00:00:00:00:01"}) ||
			b.GetGatewayIp() != lanA[0] || !slices.Equal(b.GetTargetIps(), []string{"192.168.1.10"}) ||
			string(b.GetSecureon()) != "\x01\x02\x03\x04\x05\x06" || len(b.GetPassiveAddrs()) != 0 {
			t.Errorf("%s's order: %v", p.name, b)
		}
	}
	for _, p := range []*wakePeer{neighbours[0], other, far} {
		if n := len(p.ordered()); n != 0 {
			t.Errorf("%s was asked %d times; it is not among the wakers", p.name, n)
		}
	}

	// A neighbour that reports again is seen more recently: it goes first.
	s.tick()
	if err := neighbours[0].ms.Write(&pb.PeerUp{Body: &pb.PeerUp_Stats{Stats: &pb.PeerStats{}}}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	s.clock.Advance(wake.Cooldown)
	coordinatortest.Eventually(t, 10*time.Second, "pc-02 asked first", func() bool {
		resp, err := s.admin.Wake(ctx, "pc-01", nil)
		if catalog.CodeOf(err) == catalog.CodeWakeCooldown {
			return false // the previous look's attempt
		}
		if err != nil {
			t.Fatal(err)
		}
		if slices.Equal(wakerNames(resp), []string{"pc-02", "pc-04"}) {
			return true
		}
		s.clock.Advance(wake.Cooldown) // stats not read yet: look again after the cooldown
		return false
	})

	ev := lastWakeEvent(t, s)
	if ev.GetUser() != "admin" || peer.ID(ev.GetPeer()) != target.id() || ev.GetPeerName() != "pc-01" || ev.GetAction() != coordinator.WakeMethodWOL ||
		ev.GetCode() != "" || !strings.Contains(ev.GetDetail(), "pc-02 (peer)") || !strings.Contains(ev.GetDetail(), "pc-04 (peer)") ||
		peer.ID(ev.GetTechnician()) != s.admin.ID() {
		t.Errorf("audit event: %v", ev)
	}
	if n := metric(t, s, `jumpmesh_coordinator_wakes_total{result="ok"}`); n < 2 {
		t.Errorf("wakes_total{ok} = %v, want at least 2", n)
	}
}

func lastWakeEvent(t *testing.T, s *wakeSite) *pb.AuditEvent {
	t.Helper()
	events := audit(t, s.Site, &pb.AuditRequest{Kind: coordinator.AuditWake})
	if len(events) == 0 {
		t.Fatal("no wake event audited")
	}
	return events[len(events)-1]
}

// metric reads one series from the coordinator's /metrics.
func metric(t *testing.T, s *wakeSite, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + s.coord.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return 0
}

// TestWakeCooldown: after an attempt the target cannot be woken for 30 s
// (the seconds left in the refusal), whoever asks, across a coordinator
// restart; a refusal before sending does not start the wait.
func TestWakeCooldown(t *testing.T) {
	s := newWakeSite(t)
	ctx := s.ctx()
	s.peer("pc-01", lanA, "02:00:00:00:00:01", "192.168.1.10").asleep(s)

	// No neighbour yet: refused, and no cooldown starts.
	_, err := s.admin.Wake(ctx, "pc-01", nil)
	wantCode(t, err, catalog.CodeWakeNoNeighbor)
	n := s.peer("pc-02", lanA, "02:00:00:00:00:02", "192.168.1.11").online(s)
	if _, err := s.admin.Wake(ctx, "pc-01", nil); err != nil {
		t.Fatalf("first wake after a refusal: %v", err)
	}

	tess := s.user("tess", pb.Role_ROLE_ADMIN)
	_, err = tess.Wake(ctx, "pc-01", nil)
	wantCode(t, err, catalog.CodeWakeCooldown)
	if !strings.Contains(err.Error(), "30 s left") {
		t.Errorf("refusal %q does not say 30 s left", err)
	}
	s.clock.Advance(12 * time.Second)
	_, err = s.admin.Wake(ctx, "pc-01", nil)
	wantCode(t, err, catalog.CodeWakeCooldown)
	if !strings.Contains(err.Error(), "18 s left") {
		t.Errorf("refusal %q does not say 18 s left", err)
	}

	s.Stop()
	s.start()
	_, err = s.admin.Wake(ctx, "pc-01", nil)
	wantCode(t, err, catalog.CodeWakeCooldown)
	if !strings.Contains(err.Error(), "18 s left") {
		t.Errorf("after a restart: %q, want 18 s left", err)
	}

	s.clock.Advance(18 * time.Second)
	n.online(s) // its connection went with the old coordinator
	resp, err := s.admin.Wake(ctx, "pc-01", nil)
	if err != nil || !slices.Equal(wakerNames(resp), []string{"pc-02"}) {
		t.Fatalf("wake after the cooldown: %v, %v", wakerNames(resp), err)
	}
	if got := len(n.ordered()); got != 2 {
		t.Errorf("pc-02 got %d orders, want 2", got)
	}
	events := audit(t, s.Site, &pb.AuditRequest{Kind: coordinator.AuditWake})
	var codes []string
	for _, e := range events {
		codes = append(codes, cmp(e.GetCode(), "ok"))
	}
	if want := []string{"wake_no_neighbor", "ok", "wake_cooldown", "wake_cooldown", "wake_cooldown", "ok"}; !slices.Equal(codes, want) {
		t.Errorf("audited results %v, want %v", codes, want)
	}
}

func cmp(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

// TestWakeRefusals: each refusal has its code, said before anything is sent.
func TestWakeRefusals(t *testing.T) {
	s := newWakeSite(t)
	ctx := s.ctx()
	sleeper := s.peer("pc-01", lanA, "02:00:00:00:00:01", "192.168.1.10").asleep(s)
	n := s.peer("pc-02", lanA, "02:00:00:00:00:02", "192.168.1.11").online(s)
	nomac := s.peer("pc-09", [2]string{"192.168.7.1", ""}, "02:00:00:00:00:09", "192.168.7.9").asleep(s)
	s.peer("pc-c1", lanC, "02:00:00:00:02:01", "10.9.0.5").asleep(s)

	_, err := s.admin.Wake(ctx, "pc-02", nil)
	wantCode(t, err, catalog.CodeWakeNotNeeded)

	for _, pw := range [][]byte{{1}, {1, 2, 3}, {1, 2, 3, 4, 5}, make([]byte, 7)} {
		_, err = s.admin.Wake(ctx, "pc-01", pw)
		wantCode(t, err, catalog.CodeInvalidArgument)
	}

	_, err = s.admin.Wake(ctx, "pc-c1", nil)
	wantCode(t, err, catalog.CodeWakeNoNeighbor)
	if !strings.Contains(err.Error(), "10.9.0.1 (cc:cc:cc:cc:cc:01)") {
		t.Errorf("no-neighbour refusal %q does not name the last gateway", err)
	}
	_, err = s.admin.Wake(ctx, nomac.id().String(), nil)
	wantCode(t, err, catalog.CodeWakeNoNeighbor)
	if !strings.Contains(err.Error(), "gateway MAC is unknown") {
		t.Errorf("refusal %q does not say the gateway MAC is unknown", err)
	}

	_, err = s.admin.Wake(ctx, "no-such-peer", nil)
	wantCode(t, err, catalog.CodePeerNotFound)

	if _, err := s.admin.SetSettings(ctx, map[string]string{"allow-wake": "false"}); err != nil {
		t.Fatal(err)
	}
	_, err = s.admin.Wake(ctx, "pc-01", nil)
	wantCode(t, err, catalog.CodeWakeNotAllowed)
	if _, err := s.admin.SetSettings(ctx, map[string]string{"allow-wake": "true"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.admin.Wake(ctx, sleeper.id().String(), nil); err != nil {
		t.Fatalf("allowed again: %v", err)
	}
	if len(n.ordered()) != 1 {
		t.Errorf("the neighbour got %d orders, want 1 (refusals send nothing)", len(n.ordered()))
	}
	if v := metric(t, s, `jumpmesh_coordinator_wakes_total{result="wake_not_allowed"}`); v != 1 {
		t.Errorf("wakes_total{wake_not_allowed} = %v", v)
	}
}

// TestTechnicianCannotWakeAPeerOutsideTheirGroups: a technician wakes
// only peers they can see (peer_not_found otherwise, by name or ID, as for
// a jump); a neighbour in a group they cannot see is asked, but shown to
// them without its name or ID.
func TestTechnicianCannotWakeAPeerOutsideTheirGroups(t *testing.T) {
	s := newWakeSite(t)
	ctx := s.ctx()
	tess := s.user("tess", pb.Role_ROLE_TECHNICIAN)
	must[*pb.Group](t)(s.admin.CreateGroup(ctx, "ops", "Ops", []*pb.GroupMember{{User: "tess", Role: pb.MemberRole_MEMBER_ROLE_MEMBER}}))
	must[*pb.Group](t)(s.admin.CreateGroup(ctx, "hr", "HR", nil))
	opsKey := s.Installer(&pb.InstallerDefaults{Group: "jumpgroup:ops"}, 0, time.Hour).GetKey()
	hrKey := s.Installer(&pb.InstallerDefaults{Group: "jumpgroup:hr"}, 0, time.Hour).GetKey()

	s.key = hrKey
	secret := s.peer("hr-01", lanA, "02:00:00:00:00:01", "192.168.1.10").asleep(s)
	hrNeighbour := s.peer("hr-02", lanA, "02:00:00:00:00:02", "192.168.1.11").online(s)
	s.key = opsKey
	s.peer("ops-01", lanA, "02:00:00:00:00:03", "192.168.1.12").asleep(s)

	for _, ref := range []string{"hr-01", secret.id().String()} {
		_, err := tess.Wake(ctx, ref, nil)
		wantCode(t, err, catalog.CodePeerNotFound)
	}
	if len(hrNeighbour.ordered()) != 0 {
		t.Fatal("a refused wake sent an order")
	}
	ev := lastWakeEvent(t, s)
	if ev.GetCode() != string(catalog.CodePeerNotFound) || ev.GetUser() != "tess" {
		t.Errorf("refusal audited as %v", ev)
	}

	resp, err := tess.Wake(ctx, "ops-01", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetWakers()) != 1 || resp.GetWakers()[0].GetName() != "a peer on the same network" || len(resp.GetWakers()[0].GetId()) != 0 {
		t.Errorf("tess sees wakers %v", resp.GetWakers())
	}
	if ev := lastWakeEvent(t, s); !strings.Contains(ev.GetDetail(), "hr-02") {
		t.Errorf("the audit does not name the waker: %v", ev)
	}

	// A neighbour that fails is not named in the failure either.
	hrNeighbour.h.RemoveStreamHandler(wake.Protocol)
	s.clock.Advance(wake.Cooldown)
	_, err = tess.Wake(ctx, "ops-01", nil)
	wantCode(t, err, catalog.CodeWakeFailed)
	if strings.Contains(err.Error(), "hr-02") || strings.Contains(err.Error(), hrNeighbour.id().String()) {
		t.Errorf("the failure names the other group's host: %v", err)
	}
}

// TestPeerCannotSendWakeRequest: a peer's key is not a technician's; the
// control protocol's wake is refused to it, and to a jumpoint's key.
func TestPeerCannotSendWakeRequest(t *testing.T) {
	s := newWakeSite(t)
	p := s.peer("pc-02", lanA, "02:00:00:00:00:02", "192.168.1.11").online(s)
	s.peer("pc-01", lanA, "02:00:00:00:00:01", "192.168.1.10").asleep(s)
	req := &pb.Request{Body: &pb.Request_Wake{Wake: &pb.WakeRequest{Ref: "pc-01"}}}
	_, err := control.Call(s.ctx(), p.h, s.coord.ID(), req)
	wantCode(t, err, catalog.CodeUnknownTechnician)

	jp := s.user("plant-a", pb.Role_ROLE_JUMPOINT)
	_, err = jp.Call(s.ctx(), req)
	wantCode(t, err, catalog.CodePermissionDenied)
	if len(p.ordered()) != 0 {
		t.Error("an order was sent")
	}
}

// TestPassivePeer: a peer that says it goes passive is shown passive (ls,
// show, status:passive) until its next hello; a jump to it is refused with
// peer_passive; a wake sends the signed command to its passive port from
// the coordinator itself (a real passive listener takes it), asks its
// neighbours to forward it too, and is not stopped by allow-wake=false.
func TestPassivePeer(t *testing.T) {
	s := newWakeSite(t)
	ctx := s.ctx()
	port := coordinatortest.FreePort(t, "tcp")
	if _, err := s.admin.SetSettings(ctx, map[string]string{"passive-port": fmt.Sprint(port), "allow-wake": "false", "passive-idle-seconds": "60"}); err != nil {
		t.Fatal(err)
	}
	p := s.peer("kiosk-01", lanA, "02:00:00:00:00:01", "127.0.0.1")
	down := p.helloWith(s.Site, &pb.PeerHello{InstallerKey: s.key, Info: p.info})
	if w := down.GetWelcome(); w.GetPassivePort() != uint32(port) || w.GetPassiveIdleSeconds() != 60 {
		t.Fatalf("welcome: passive port %d, idle %d s", w.GetPassivePort(), w.GetPassiveIdleSeconds())
	}
	n := s.peer("pc-02", lanA, "02:00:00:00:00:02", "192.168.1.11").online(s)

	if err := p.ms.Write(&pb.PeerUp{Body: &pb.PeerUp_Passive{Passive: &pb.PeerPassive{Port: uint32(port)}}}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	coordinatortest.Eventually(t, 10*time.Second, "kiosk-01 passive", func() bool {
		v, err := s.admin.Peer(ctx, "kiosk-01")
		return err == nil && v.GetStatus() == coordinator.StatusPassive && v.GetPeer().GetPassiveUnix() == testStart.Unix()
	})
	if views := must[[]*pb.PeerView](t)(s.admin.Peers(ctx, "status:passive", false)); len(views) != 1 || views[0].GetPeer().GetSettings().GetName() != "kiosk-01" {
		t.Errorf("status:passive lists %d peers", len(views))
	}
	// The grant request itself (console.Jump would wake the peer and wait).
	_, err := s.admin.Call(ctx, &pb.Request{Body: &pb.Request_Jump{Jump: &pb.JumpRequest{Ref: "kiosk-01", Protocol: string(channel.Protocol)}}})
	wantCode(t, err, catalog.CodePeerPassive)

	listener, err := wake.ListenPassive(wake.PassiveConfig{Port: port, Addr: "127.0.0.1", Site: s.coord.ID(), Self: p.id()})
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	resp, err := s.admin.Wake(ctx, "kiosk-01", nil)
	if err != nil {
		t.Fatalf("passive wake with allow-wake=false: %v", err)
	}
	if resp.GetMethod() != coordinator.WakeMethodPassive || len(resp.GetSent()) == 0 || !slices.Equal(wakerNames(resp), []string{"pc-02"}) {
		t.Errorf("method %q, coordinator sent %v, wakers %v", resp.GetMethod(), resp.GetSent(), wakerNames(resp))
	}
	select {
	case body := <-listener.Woken():
		if peer.ID(body.GetTargetId()) != p.id() {
			t.Errorf("woken for %s", peer.ID(body.GetTargetId()))
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the passive port got no command: %+v", listener.Stats())
	}
	want := fmt.Sprintf("127.0.0.1:%d", port)
	if orders := n.ordered(); len(orders) != 1 || !slices.Equal(orders[0].GetPassiveAddrs(), []string{want}) || len(orders[0].GetMacs()) != 0 {
		t.Errorf("the neighbour's order: %v (want passive address %s, no MAC)", orders, want)
	}

	// Its next hello: online again.
	p.online(s)
	v := must[*pb.PeerView](t)(s.admin.Peer(ctx, "kiosk-01"))
	if v.GetStatus() != coordinator.StatusOnline || v.GetPeer().GetPassiveUnix() != 0 {
		t.Errorf("after its hello: %s, passive since %d", v.GetStatus(), v.GetPeer().GetPassiveUnix())
	}
}

// TestPeerPassiveMarksOnlyItsSender: PeerPassive names no one; whatever a
// peer sends on its stream marks that peer alone, never another.
func TestPeerPassiveMarksOnlyItsSender(t *testing.T) {
	s := newWakeSite(t)
	ctx := s.ctx()
	s.peer("pc-01", lanA, "02:00:00:00:00:01", "192.168.1.10").online(s)
	mallory := s.peer("pc-02", lanA, "02:00:00:00:00:02", "192.168.1.11").online(s)
	if err := mallory.ms.Write(&pb.PeerUp{Body: &pb.PeerUp_Passive{Passive: &pb.PeerPassive{Port: 5832}}}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	coordinatortest.Eventually(t, 10*time.Second, "pc-02 passive", func() bool {
		v, err := s.admin.Peer(ctx, "pc-02")
		return err == nil && v.GetStatus() == coordinator.StatusPassive
	})
	v := must[*pb.PeerView](t)(s.admin.Peer(ctx, "pc-01"))
	if v.GetStatus() != coordinator.StatusOnline || v.GetPeer().GetPassiveUnix() != 0 {
		t.Errorf("pc-01 is %s (passive since %d) after pc-02 said passive", v.GetStatus(), v.GetPeer().GetPassiveUnix())
	}
	// The coordinator ended the stream: nothing more is read from it.
	var down pb.PeerDown
	if err := mallory.ms.Read(&down, 10*time.Second); err == nil {
		t.Errorf("stream still open after passive: got %v", &down)
	}
}

// The same-gateway index follows a peer that moves to another network, and
// forgets a removed one.
func TestWakeFollowsAPeerThatMoves(t *testing.T) {
	s := newWakeSite(t)
	ctx := s.ctx()
	s.peer("pc-01", lanA, "02:00:00:00:00:01", "192.168.1.10").asleep(s)
	n := s.peer("pc-02", lanA, "02:00:00:00:00:02", "192.168.1.11").online(s)
	n.info.GatewayIp, n.info.GatewayMac = lanC[0], lanC[1]
	n.online(s) // a new hello from another network
	_, err := s.admin.Wake(ctx, "pc-01", nil)
	wantCode(t, err, catalog.CodeWakeNoNeighbor)
	n.info.GatewayIp, n.info.GatewayMac = lanA[0], strings.ToUpper(lanA[1]) // same MAC, written otherwise
	n.online(s)
	if _, err := s.admin.Wake(ctx, "pc-01", nil); err != nil {
		t.Fatalf("back on pc-01's network: %v", err)
	}
}

// TestJumpointWakesThePeersBehindIt: a peer on an isolated network has no
// gateway; the jumpoint it talks through is its waker (while the jumpoint
// is online), and the order names the target's IPs for the jumpoint to
// face.
func TestJumpointWakesThePeersBehindIt(t *testing.T) {
	js := newJumpointSite(t)
	s := &wakeSite{harness: js.harness, key: js.key.GetKey()}
	ctx := s.ctx()
	plantA := serveOrders(js.plantA.Host(), s.coord.ID())
	serveOrders(js.plantB.Host(), s.coord.ID())
	plc := s.peer("plc-02", [2]string{"", ""}, "02:00:00:00:03:01", "10.20.0.40").asleep(s)

	resp, err := s.admin.Wake(ctx, "plc-02", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetWakers()) != 1 || resp.GetWakers()[0].GetName() != "plant-a" || resp.GetWakers()[0].GetKind() != "jumpoint" {
		t.Fatalf("wakers %v", resp.GetWakers())
	}
	orders := plantA.ordered()
	if len(orders) != 1 || peer.ID(orders[0].GetTargetId()) != plc.id() || !slices.Equal(orders[0].GetTargetIps(), []string{"10.20.0.40"}) ||
		!slices.Equal(orders[0].GetMacs(), []string{"02:00:00:00:03:01"}) {
		t.Fatalf("plant-a's orders: %v", orders)
	}

	// plant-a stops refreshing: offline, and the peer has no waker.
	s.clock.Advance(3*coordinator.JumpointRefresh + wake.Cooldown + time.Second)
	_, err = s.admin.Wake(ctx, "plc-02", nil)
	wantCode(t, err, catalog.CodeWakeNoNeighbor)
	if !strings.Contains(err.Error(), "jumpoints are offline") {
		t.Errorf("refusal %q does not say its jumpoints are offline", err)
	}
}
