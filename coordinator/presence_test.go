package coordinator_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Several coordinators of one site on one real etcd (presence.go): peers on
// each, jumps asked of one for a peer another holds, a coordinator cut off
// from etcd, one killed.

// tcpProxy forwards loopback TCP to an etcd member until cut: a
// coordinator behind it can be cut off from etcd and let back.
type tcpProxy struct {
	t      *testing.T
	addr   string
	target string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	p := &tcpProxy{t: t, target: target, conns: map[net.Conn]bool{}}
	p.listen("127.0.0.1:0")
	t.Cleanup(func() { p.cut(); p.wg.Wait() })
	return p
}

func (p *tcpProxy) listen(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[up] = true, true
			p.mu.Unlock()
			for _, pair := range [][2]net.Conn{{c, up}, {up, c}} {
				p.wg.Go(func() {
					io.Copy(pair[0], pair[1])
					pair[0].Close()
					pair[1].Close()
				})
			}
		}
	})
}

// cut closes the listener and every connection through it.
func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// restore listens again on the same address.
func (p *tcpProxy) restore() { p.listen(p.addr) }

// haSite is a site on etcd (coordinator A from coordinatortest) with more
// coordinators of the same site.
type haSite struct {
	*coordinatortest.Site[*console.Client]
	etcd string // the member's host:port
}

func newHASite(t *testing.T) *haSite {
	t.Setenv("JM_TEST_STORE", "etcd")
	s := coordinatortest.New(t, console.Login)
	endpoint := s.Store.URL[len("etcd://"):]
	return &haSite{Site: s, etcd: endpoint}
}

// another runs one more coordinator of the site as instance name, through
// a proxy to etcd, with a short lease.
func (h *haSite) another(name string, ttl time.Duration) (*coordinator.Coordinator, *tcpProxy, *coordinatortest.Site[*console.Client]) {
	h.T.Helper()
	t := h.T.(*testing.T)
	proxy := newTCPProxy(t, h.etcd)
	store := coordinator.StoreConfig{URL: "etcd://" + proxy.addr, Instance: name,
		Etcd: coordinator.EtcdConfig{LockTTL: ttl, RequestTimeout: 2 * time.Second, DialTimeout: 5 * time.Second}}
	c, err := coordinator.New(coordinator.Config{DataDir: h.DataDir(), Clock: h.Clock, Store: store, HTTPAddr: "off",
		Listen: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		t.Fatalf("coordinator %s: %v", name, err)
	}
	t.Cleanup(func() { c.Close() })
	// The same site seen through this coordinator, for rawPeer.
	at := *h.Site
	at.Coord, at.Addr = c, c.LoginAddrs()[0].String()
	return c, proxy, &at
}

func (h *haSite) etcdClient() *clientv3.Client {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://" + h.etcd}, Logger: zap.NewNop(), DialTimeout: 5 * time.Second})
	if err != nil {
		h.T.Fatal(err)
	}
	h.T.Cleanup(func() { cli.Close() })
	return cli
}

func (h *haSite) prefix() string { return coordinator.DefaultEtcdPrefix(h.Coord.ID().String()) }

// listeningPeer is a rawPeer that listens on loopback, so the coordinator
// holding it learns its addresses (identify).
func listeningPeer(t *testing.T) *rawPeer {
	t.Helper()
	return &rawPeer{t: t, h: coordinatortest.LoopbackHost(t)}
}

// statusOf is id's status as c's coordinator shows it, or "" while that
// coordinator does not know id. A peer that said hello to another
// coordinator of the site reaches this one's registry by its watch of the
// store (presence.go): a few milliseconds after the other coordinator
// answered the hello, tens on a loaded machine. Until then this one
// answers a show by ID with CodePeerNotFound, as it would have a moment
// before the peer enrolled: a test that polls for such a peer's status
// waits through that. Any other error fails the test.
func statusOf(t *testing.T, c *console.Client, id peer.ID) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := c.Peer(ctx, id.String())
	if catalog.CodeOf(err) == catalog.CodePeerNotFound {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return v.GetStatus()
}

// TestJumpAcrossCoordinators: three coordinators of one site on one etcd,
// a peer on each. A jump asked of A for the peer B holds is granted with
// the addresses and IP B sees; every coordinator lists all three online;
// B cut off from etcd: its peer is offline on A within the lease's TTL and
// online again once B is back; C killed (its lease lapses, nothing
// closed): its peer is offline on A, and online again through A.
func TestJumpAcrossCoordinators(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	const ttl = 2 * time.Second
	h := newHASite(t)
	b, proxyB, atB := h.another("b", ttl)
	c, proxyC, atC := h.another("c", ttl)
	key := h.Installer(&pb.InstallerDefaults{}, 0, week).GetKey()
	peerA := listeningPeer(t).online(h.Site, key, "pa")
	peerB := listeningPeer(t).online(atB, key, "pb")
	peerC := listeningPeer(t).online(atC, key, "pc")
	admin := h.Admin
	for _, p := range []*rawPeer{peerA, peerB, peerC} {
		coordinatortest.Eventually(t, 10*time.Second, "every peer online on A", func() bool { return statusOf(t, admin, p.id()) == coordinator.StatusOnline })
	}
	ctx := h.Ctx()
	// Presence is written under the authenticated peer's ID only, by the
	// coordinator that holds it: one record per peer, naming its holder.
	resp0, err := h.etcdClient().Get(ctx, h.prefix()+"o/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	holders := map[peer.ID]string{}
	for _, kv := range resp0.Kvs {
		var rec struct{ Instance string }
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			t.Fatal(err)
		}
		holders[peer.ID(kv.Key[len(h.prefix()+"o/"):])] = rec.Instance
	}
	if len(holders) != 3 || holders[peerA.id()] != coordinator.DefaultInstance() || holders[peerB.id()] != "b" || holders[peerC.id()] != "c" {
		t.Fatalf("presence records: %v", holders)
	}
	online, err := admin.Peers(ctx, "status:online", false)
	if err != nil || len(online) != 3 {
		t.Fatalf("A's search for online peers: %d %v", len(online), err)
	}

	// B writes the peer's addresses once identify told its host (a moment
	// after the session started, at most identifyWait); A follows.
	coordinatortest.Eventually(t, 10*time.Second, "A knows B's peer's addresses", func() bool {
		return len(h.Coord.Service().HostAddrsForTest(peerB.id())) > 0
	})
	resp, err := admin.Call(ctx, &pb.Request{Body: &pb.Request_Jump{Jump: &pb.JumpRequest{Ref: peerB.id().String(), Capability: grant.Exec}}})
	if err != nil {
		t.Fatalf("a jump through A to B's peer: %v", err)
	}
	j := resp.GetJump()
	if j.GetPeer().GetStatus() != coordinator.StatusOnline || j.GetPeerIp() != "127.0.0.1" {
		t.Fatalf("jump: status %s, peer IP %q", j.GetPeer().GetStatus(), j.GetPeerIp())
	}
	held := b.Host().Peerstore().Addrs(peerB.id())
	found := false
	for _, a := range mesh.DecodeAddrs(j.GetAddrs()) {
		for _, want := range held {
			found = found || a.Equal(want)
		}
	}
	if !found {
		t.Fatalf("jump addrs %v, B knows the peer at %v", mesh.DecodeAddrs(j.GetAddrs()), held)
	}

	// B cut off from etcd: its lease lapses, A shows its peer offline.
	proxyB.cut()
	coordinatortest.Eventually(t, ttl+8*time.Second, "B's peer offline on A", func() bool { return statusOf(t, admin, peerB.id()) == coordinator.StatusOffline })
	_, err = admin.Jump(ctx, peerB.id().String(), grant.Exec)
	coordinatortest.WantCode(t, err, catalog.CodePeerOffline)
	proxyB.restore()
	coordinatortest.Eventually(t, 15*time.Second, "B's peer online on A again", func() bool { return statusOf(t, admin, peerB.id()) == coordinator.StatusOnline })

	// C killed: cut off from etcd for good, its host gone, no lease
	// revoked. Its peer is offline on A within the TTL, and comes back
	// through A.
	proxyC.cut()
	c.Host().Close()
	coordinatortest.Eventually(t, ttl+8*time.Second, "C's peer offline on A", func() bool { return statusOf(t, admin, peerC.id()) == coordinator.StatusOffline })
	peerC.online(h.Site, key, "pc")
	if st := statusOf(t, admin, peerC.id()); st != coordinator.StatusOnline {
		t.Fatalf("the killed coordinator's peer is not online through A: status %q", st)
	}
	coordinatortest.Eventually(t, 10*time.Second, "C's peer online on B, held by A", func() bool { return b.Service().PeerOnlineForTest(peerC.id()) })
}
