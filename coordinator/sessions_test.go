package coordinator_test

import (
	"crypto/rand"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/channel"
	"github.com/jumpmesh/jumpmesh/mesh/frame"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/peerproto"
)

const week = 7 * 24 * time.Hour

// rawPeer is a patched peer: its own libp2p identity speaking the peer
// protocol directly, saying whatever the test makes it say.
type rawPeer struct {
	t  *testing.T
	h  host.Host
	ms *frame.Stream
}

func newRawPeer(t *testing.T, site *coordinatortest.Site[*console.Client]) *rawPeer {
	t.Helper()
	return &rawPeer{t: t, h: stranger(t, site)}
}

func (p *rawPeer) id() peer.ID { return p.h.ID() }

// hello opens a peer stream, says hello with key, and returns the reply.
func (p *rawPeer) hello(site *coordinatortest.Site[*console.Client], key, name string) *pb.PeerDown {
	p.t.Helper()
	return p.helloWith(site, &pb.PeerHello{InstallerKey: key, Info: &pb.PeerInfo{Hostname: name, Protocols: []string{string(channel.Protocol)}}})
}

// helloWith opens a peer stream, says hello, and returns the reply.
func (p *rawPeer) helloWith(site *coordinatortest.Site[*console.Client], hello *pb.PeerHello) *pb.PeerDown {
	p.t.Helper()
	ctx := site.Ctx()
	if err := p.h.Connect(ctx, peer.AddrInfo{ID: site.Coord.ID(), Addrs: site.Coord.Host().Addrs()}); err != nil {
		p.t.Fatal(err)
	}
	st, err := p.h.NewStream(ctx, site.Coord.ID(), peerproto.Protocol)
	if err != nil {
		p.t.Fatal(err)
	}
	p.ms = frame.NewStream(st, peerproto.MaxMessage)
	if err := p.ms.Write(&pb.PeerUp{Body: &pb.PeerUp_Hello{Hello: hello}}, 10*time.Second); err != nil {
		p.t.Fatal(err)
	}
	var down pb.PeerDown
	if err := p.ms.Read(&down, 10*time.Second); err != nil {
		p.t.Fatalf("reading the reply to hello: %v", err)
	}
	return &down
}

// online enrolls with key and stays connected.
func (p *rawPeer) online(site *coordinatortest.Site[*console.Client], key, name string) *rawPeer {
	p.t.Helper()
	if down := p.hello(site, key, name); down.GetWelcome() == nil {
		p.t.Fatalf("not welcomed: %v", down)
	}
	return p
}

func (p *rawPeer) report(ev *pb.SessionEvent) {
	p.t.Helper()
	if err := p.ms.Write(&pb.PeerUp{Body: &pb.PeerUp_Session{Session: ev}}, 10*time.Second); err != nil {
		p.t.Fatal(err)
	}
}

func grantNonce(t *testing.T, j *console.Jump) []byte {
	t.Helper()
	g, err := grant.Parse(j.Grant)
	if err != nil {
		t.Fatal(err)
	}
	return g.GetNonce()
}

func audit(t *testing.T, site *coordinatortest.Site[*console.Client], req *pb.AuditRequest) []*pb.AuditEvent {
	t.Helper()
	events, err := site.Admin.Audit(site.Ctx(), req)
	if err != nil {
		t.Fatalf("audit: %v", err)
	}
	return events
}

// waitAudited waits for an event with detail to be in the audit log.
func waitAudited(t *testing.T, site *coordinatortest.Site[*console.Client], detail string) *pb.AuditEvent {
	t.Helper()
	var found *pb.AuditEvent
	coordinatortest.Eventually(t, 10*time.Second, "event "+detail+" audited", func() bool {
		for _, e := range audit(t, site, &pb.AuditRequest{}) {
			if e.GetDetail() == detail {
				found = e
				return true
			}
		}
		return false
	})
	return found
}

// Finding 7: a technician enrolls a peer with her own installer key and has
// it report sessions by someone else, on grants she did not get for it.
func TestPeerCannotForgeSessionEvents(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	ctx := site.Ctx()
	alice := site.User("alice", pb.Role_ROLE_TECHNICIAN)
	bob := site.User("bob", pb.Role_ROLE_TECHNICIAN)
	db := newRawPeer(t, site).online(site, site.Installer(&pb.InstallerDefaults{Name: "db-prod-01"}, 0, week).GetKey(), "db")
	own, err := alice.CreateInstaller(ctx, &pb.InstallerCreateRequest{Defaults: &pb.InstallerDefaults{Group: "user:alice"}, ValidForSeconds: 3600})
	if err != nil {
		t.Fatal(err)
	}
	evil := newRawPeer(t, site).online(site, own.GetKey(), "evil")

	adminsGrant, err := site.Admin.Jump(ctx, db.id().String(), grant.Exec)
	if err != nil {
		t.Fatal(err)
	}
	forged := func(nonce []byte, detail string) *pb.SessionEvent {
		return &pb.SessionEvent{SessionId: "s-" + detail, User: "bob", Technician: []byte(bob.ID()), Capability: grant.Shell,
			Detail: detail, GrantNonce: nonce}
	}
	random := make([]byte, 16)
	rand.Read(random)
	evil.report(forged(nil, "no grant"))
	evil.report(forged(random, "a grant never issued"))
	evil.report(forged(grantNonce(t, adminsGrant), "the admin's grant for db-prod-01"))
	evil.report(&pb.SessionEvent{SessionId: "s-end", User: "bob", End: true, Detail: "an end of no session"})
	// A grant alice got for her own peer: stored, but as hers.
	mine, err := alice.Jump(ctx, evil.id().String(), grant.Exec)
	if err != nil {
		t.Fatal(err)
	}
	// A refusal is kept, but "bob" is only the peer's word: no user.
	evil.report(&pb.SessionEvent{SessionId: "s-refused", User: "bob", Technician: []byte(bob.ID()), Detail: "a refusal by bob",
		GrantNonce: grantNonce(t, mine), Refused: &pb.Error{Code: string(catalog.CodeGrantInvalid)}})
	evil.report(forged(grantNonce(t, mine), "her own grant"))

	got := waitAudited(t, site, "her own grant")
	if got.GetUser() != "alice" || peer.ID(got.GetTechnician()) != alice.ID() || peer.ID(got.GetPeer()) != evil.id() {
		t.Fatalf("stored as user %q technician %s peer %s, want alice on her peer", got.GetUser(), peer.ID(got.GetTechnician()), peer.ID(got.GetPeer()))
	}
	kept := false
	for _, e := range audit(t, site, &pb.AuditRequest{Kind: "refused"}) {
		if e.GetSessionId() == "s-refused" {
			if kept = true; e.GetUser() != "" {
				t.Fatalf("a refusal the peer attributes to bob is stored as user %q", e.GetUser())
			}
		}
	}
	if !kept {
		t.Fatal("the refusal was not kept")
	}
	if events := audit(t, site, &pb.AuditRequest{User: "bob"}); len(events) != 0 {
		t.Fatalf("audit --user bob shows %d events: %v", len(events), events)
	}
	for _, e := range audit(t, site, &pb.AuditRequest{}) {
		if e.GetKind() == "start" && e.GetDetail() != "her own grant" || e.GetKind() == "end" {
			t.Fatalf("forged event stored: %v", e)
		}
	}
	if refused, _ := site.Coord.Service().SessionEventsDropped(); refused != 4 {
		t.Fatalf("%d events counted refused, want 4", refused)
	}
}

// Finding 7: 300 start events with 200 KiB details on one grant: bounded
// fields, a bounded number stored, and the audit log still reads.
func TestPeerCannotFillTheAuditLog(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	key := site.Installer(&pb.InstallerDefaults{Name: "noisy"}, 0, week).GetKey()
	p := newRawPeer(t, site).online(site, key, "noisy")
	j, err := site.Admin.Jump(site.Ctx(), p.id().String(), grant.Exec)
	if err != nil {
		t.Fatal(err)
	}
	nonce := grantNonce(t, j)
	big, long := strings.Repeat("x", 200<<10), strings.Repeat("y", 8<<10) // within a peer message
	began := time.Now()
	for i := range 300 {
		ev := &pb.SessionEvent{SessionId: long, Capability: grant.Exec, Detail: big, GrantNonce: nonce,
			Exit: &pb.ExitStatus{Error: long, Signal: long}, End: i%3 == 1}
		if i%3 == 2 {
			ev.Refused = &pb.Error{Code: long, Detail: long}
		}
		p.report(ev)
	}
	p.report(&pb.SessionEvent{SessionId: "last", Detail: "last", GrantNonce: nonce}) // may itself be over the rate
	coordinatortest.Eventually(t, 20*time.Second, "every report handled", func() bool {
		refused, limited := site.Coord.Service().SessionEventsDropped()
		stored := 0
		for _, e := range audit(t, site, &pb.AuditRequest{Peer: p.id().String()}) {
			if e.GetKind() != "grant" {
				stored++
			}
		}
		return refused+limited+int64(stored) == 301
	})
	elapsed := time.Since(began)
	events := audit(t, site, &pb.AuditRequest{Peer: p.id().String()})
	total := 0
	for _, e := range events {
		for _, f := range []string{e.GetDetail(), e.GetCode(), e.GetSessionId(), e.GetExit().GetError()} {
			if len(f) > coordinator.MaxEventField {
				t.Fatalf("a %d-byte field was stored", len(f))
			}
		}
		total++
	}
	// The bucket: a burst, then the rate for as long as the reports took.
	if most := coordinator.EventBurst + 1 + int(coordinator.EventRate*elapsed.Seconds()); total > most+1 {
		t.Fatalf("%d events stored in %s, the bucket allows %d", total, elapsed, most)
	}
	if _, limited := site.Coord.Service().SessionEventsDropped(); limited == 0 {
		t.Fatal("no event was rate-limited")
	}
}

// Finding 8: one technician hoarding unused grants does not block the
// site, and unused grants stop counting after StartSlot.
func TestTechnicianCannotTakeEverySessionStart(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	ctx := site.Ctx()
	alice := site.User("alice", pb.Role_ROLE_TECHNICIAN)
	if _, err := site.Admin.CreateGroup(ctx, "servers", "Servers", []*pb.GroupMember{{User: "alice"}}); err != nil {
		t.Fatal(err)
	}
	web := newRawPeer(t, site).online(site, site.Installer(&pb.InstallerDefaults{Name: "web-01", Group: "jumpgroup:servers"}, 0, week).GetKey(), "web")
	ref := web.id().String()
	taken := 0
	for range 20 {
		_, err := alice.Jump(ctx, ref, grant.Exec)
		if err != nil {
			coordinatortest.WantCode(t, err, catalog.CodeServerBusy)
			continue
		}
		taken++
	}
	if taken != 10 { // half of the default 20
		t.Fatalf("alice took %d of 20 session starts, want her share of 10", taken)
	}
	if _, err := site.Admin.Jump(ctx, ref, grant.Exec); err != nil {
		t.Fatalf("the admin's jump after alice's 20: %v", err)
	}
	// Unused, her grants stop counting soon (long before they expire).
	site.Clock.Advance(coordinator.StartSlot)
	if _, err := alice.Jump(ctx, ref, grant.Exec); err != nil {
		t.Fatalf("alice after %s: %v", coordinator.StartSlot, err)
	}
}

// Finding 7: an audit log larger than one control message still reads, in
// pages: here 12 events of 200 KiB left by the attack before details were
// bounded, and 1,500 ordinary ones (more than one page holds).
func TestAuditPagesPastOneMessage(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	site.Stop()
	st := openSiteStore(t, site)
	var err error
	big := strings.Repeat("x", 200<<10)
	at := site.Clock.Now().Add(-time.Hour)
	const n = 1512
	for batch := 0; batch < n && err == nil; batch += 126 { // one 200 KiB event per transaction
		err = st.Update(func(tx *coordinator.Tx) error {
			for i := batch; i < batch+126; i++ {
				e := &pb.AuditEvent{TimeUnixNano: at.Add(time.Duration(i) * time.Millisecond).UnixNano(), Kind: "start", User: "bob",
					SessionId: strconv.Itoa(i)}
				if i == batch {
					e.Detail = big
				}
				if err := tx.PutAudit(e); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	site.Start()
	all := audit(t, site, &pb.AuditRequest{SinceUnix: at.Add(-time.Minute).Unix()})
	if len(all) != n {
		t.Fatalf("audit returned %d of %d events", len(all), n)
	}
	for i, e := range all {
		if e.GetSessionId() != strconv.Itoa(i) {
			t.Fatalf("event %d is %q: pages out of order", i, e.GetSessionId())
		}
		if len(e.GetDetail()) > 8<<10 {
			t.Fatalf("event %d carries a %d-byte detail", i, len(e.GetDetail()))
		}
	}
	// --limit: the newest ones.
	newest := audit(t, site, &pb.AuditRequest{SinceUnix: at.Add(-time.Minute).Unix(), Limit: 1200})
	if len(newest) != 1200 || newest[0].GetSessionId() != strconv.Itoa(n-1200) || newest[1199].GetSessionId() != strconv.Itoa(n-1) {
		t.Fatalf("--limit 1200 returned %d events from %s to %s", len(newest), newest[0].GetSessionId(), newest[len(newest)-1].GetSessionId())
	}
}

// openSiteStore opens the store of a stopped test site as its coordinator
// does: Badger in its data directory, or its etcd (JM_TEST_STORE=etcd).
func openSiteStore(t *testing.T, site *coordinatortest.Site[*console.Client]) *coordinator.Store {
	t.Helper()
	if !site.Store.IsEtcd() {
		st, err := coordinator.OpenStore(filepath.Join(site.DataDir(), "db"), coordinator.StoreOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	info, err := coordinator.OpenSite(site.DataDir())
	if err != nil {
		t.Fatal(err)
	}
	endpoints, _, err := coordinator.ParseStoreURL(site.Store.URL)
	if err != nil {
		t.Fatal(err)
	}
	st, err := coordinator.OpenEtcdStore(coordinator.EtcdConfig{Endpoints: endpoints, Prefix: coordinator.DefaultEtcdPrefix(info.ID.String())})
	if err != nil {
		t.Fatal(err)
	}
	return st
}
