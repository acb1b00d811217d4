package coordinator

import (
	"crypto/rand"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/wake"
)

// TestWakeWhileTheWokenPeerSaysHello is the interleaving e638bb3 fixed,
// held still: two technicians jump to a passive peer on a site with
// allow-wake=false. Tess's wake reaches the peer's passive port (a real
// listener); the peer's hello has written its record (no longer passive)
// and its session is not attached yet — for that moment the peer is
// offline. Tom, whose jump was refused with peer_passive just before,
// asks to wake it then: the answer must be wake_cooldown (someone is
// waking it: the console waits), not wake_not_allowed (waking is off: the
// console gives up), and nothing is sent again. Once the hello is through,
// the peer is online and Tom's jump is granted.
//
// The hello is split where registerPeer splits it (peerStore.write: the
// commit and the registry's record, then the session): the record is
// written as the hello writes it, without a session, and the rest of the
// hello is registerPeer itself (which then only attaches the session).
func TestWakeWhileTheWokenPeerSaysHello(t *testing.T) {
	now := time.Date(2026, 12, 4, 19, 0, 0, 0, time.UTC)
	st, err := OpenStore(filepath.Join(t.TempDir(), "db"), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	signer, _ := mesh.NewKeySigner(key)
	kioskKey, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	id, _ := peer.IDFromPrivateKey(kioskKey)

	// The kiosk's passive port: a real listener on loopback (any free port).
	listener, err := wake.ListenPassive(wake.PassiveConfig{Port: -1, Addr: "127.0.0.1", Site: signer.PeerID(), Self: id})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { listener.Close() })
	tcp, _ := listener.Addr()
	set := DefaultSettings()
	set.AllowWake, set.PassivePort = proto.Bool(false), uint32(tcp.(*net.TCPAddr).Port)

	info := &pb.PeerInfo{Hostname: "kiosk-01", PrivateIps: []string{"127.0.0.1"}, GatewayIp: "192.168.5.1", GatewayMac: "aa:bb:cc:00:05:01"}
	kiosk := &pb.Peer{Id: []byte(id), Settings: &pb.InstallerDefaults{Name: "kiosk-01", Group: "user:root",
		ConnectionType: pb.ConnectionType_CONNECTION_TYPE_PASSIVE}, Info: info, PublicAddr: "127.0.0.1",
		InstalledUnix: now.Add(-48 * time.Hour).Unix(), LastSeenUnix: now.Add(-time.Minute).Unix(), PassiveUnix: now.Add(-time.Minute).Unix()}
	mustUpdate(t, st, func(tx *Tx) error {
		if err := tx.PutSettings(set); err != nil {
			return err
		}
		return tx.PutPeer(kiosk)
	})
	svc, err := NewService(ServiceConfig{Store: st, Signer: signer, Clock: mesh.NewManualClock(now),
		Wake: hostWakeSender{}}) // no wakers here: only Forward, to the passive port, is used
	if err != nil {
		t.Fatal(err)
	}
	tess := &caller{peer: "tess-console", user: &pb.User{Name: "tess", Role: pb.Role_ROLE_ADMIN}}
	tom := &caller{peer: "tom-console", user: &pb.User{Name: "tom", Role: pb.Role_ROLE_ADMIN}}
	ref := id.String()
	status := func() string {
		t.Helper()
		v, err := svc.resolvePeer(tom, ref)
		if err != nil {
			t.Fatal(err)
		}
		return v.GetStatus()
	}
	if s := status(); s != StatusPassive {
		t.Fatalf("the kiosk is %s, want passive", s)
	}

	// Both jumps find it passive; Tess's wake goes out first.
	for _, c := range []*caller{tess, tom} {
		_, err := svc.jump(c, &pb.JumpRequest{Ref: ref})
		if catalog.CodeOf(err) != catalog.CodePeerPassive {
			t.Fatalf("%s's jump: %v, want peer_passive", c.name(), err)
		}
	}
	resp, err := svc.wakeRequest(tess, &pb.WakeRequest{Ref: ref})
	if err != nil {
		t.Fatalf("tess's wake: %v", err)
	}
	if resp.GetWake().GetMethod() != WakeMethodPassive || len(resp.GetWake().GetSent()) == 0 {
		t.Fatalf("tess's wake: method %q, sent %v", resp.GetWake().GetMethod(), resp.GetWake().GetSent())
	}
	select {
	case body := <-listener.Woken():
		if peer.ID(body.GetTargetId()) != id {
			t.Fatalf("woken for %s", peer.ID(body.GetTargetId()))
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the passive port got no command: %+v", listener.Stats())
	}

	// The kiosk's hello, half done: its record written, its session not yet.
	hello := &pb.PeerHello{Info: info}
	if _, _, err := svc.peers.write(id, stored(id, func(rec *pb.Peer) error {
		updateFacts(rec, hello, "127.0.0.1", now)
		return nil
	}), nil); err != nil {
		t.Fatal(err)
	}
	if s := status(); s != StatusOffline {
		t.Fatalf("mid-hello the kiosk is %s; this test holds it offline", s)
	}

	// Tom's wake meets Tess's cooldown: the console waits for the peer.
	_, err = svc.wakeRequest(tom, &pb.WakeRequest{Ref: ref})
	if catalog.CodeOf(err) != catalog.CodeWakeCooldown || !strings.Contains(err.Error(), "30 s left") {
		t.Fatalf("tom's wake while the woken kiosk says hello: %v (code %q), want wake_cooldown with 30 s left", err, catalog.CodeOf(err))
	}
	if st := listener.Stats(); st.Accepted != 1 {
		t.Errorf("the passive port accepted %d commands, want 1 (tess's)", st.Accepted)
	}
	var wakes []*pb.AuditEvent
	if err := st.View(func(tx *Tx) (err error) {
		wakes, _, err = tx.AuditPage(time.Unix(0, 0), nil, func(e *pb.AuditEvent) bool { return e.GetKind() == AuditWake }, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	codes := map[string]string{}
	for _, e := range wakes {
		codes[e.GetUser()] = e.GetCode()
	}
	if len(wakes) != 2 || codes["tess"] != "" || codes["tom"] != string(catalog.CodeWakeCooldown) {
		t.Errorf("audited wakes by user: %v (%d events), want tess ok, tom wake_cooldown", codes, len(wakes))
	}

	// The rest of the hello: online, and Tom's jump (asked again) is granted.
	if _, _, err := svc.registerPeer(id, hello, "127.0.0.1", now, newPeerSession(id, nil)); err != nil {
		t.Fatal(err)
	}
	if s := status(); s != StatusOnline {
		t.Fatalf("after its hello the kiosk is %s", s)
	}
	if j, err := svc.jump(tom, &pb.JumpRequest{Ref: ref}); err != nil || j.GetJump().GetGrant() == nil {
		t.Fatalf("tom's jump once the kiosk is online: %v", err)
	}
}
