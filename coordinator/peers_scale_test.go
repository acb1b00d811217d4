package coordinator

import (
	"crypto/rand"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/control"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// TestSearchTenThousandPeers fills a real store with 10,000 peers spread
// over personal lists and groups, restarts the service from the store, and
// checks what technicians see and find.
func TestSearchTenThousandPeers(t *testing.T) {
	const n = 10000
	st, err := OpenStore(filepath.Join(t.TempDir(), "db"), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	err = st.Update(func(tx *Tx) error {
		for _, u := range []string{"ann", "bob", "lea"} {
			if err := tx.PutUser(&pb.User{Name: u, Role: pb.Role_ROLE_TECHNICIAN}); err != nil {
				return err
			}
		}
		return tx.PutGroup(&pb.Group{Code: "ops", Members: []*pb.GroupMember{
			{User: "ann", Role: pb.MemberRole_MEMBER_ROLE_MEMBER}, {User: "lea", Role: pb.MemberRole_MEMBER_ROLE_TEAM_LEAD}}})
	})
	if err != nil {
		t.Fatal(err)
	}
	groups := []string{"user:ann", "user:bob", "jumpgroup:ops", "user:lea"}
	// Badger transactions are bounded in size: write in batches.
	for start := 0; start < n; start += 1000 {
		err := st.Update(func(tx *Tx) error {
			for i := start; i < start+1000; i++ {
				if err := tx.PutPeer(fakePeer(t, i, groups[i%len(groups)], now)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	svc := serviceOver(t, st, now)
	if total, _ := svc.PeerCounts(); total != n {
		t.Fatalf("loaded %d peers, want %d", total, n)
	}
	admin := &caller{user: &pb.User{Name: "root", Role: pb.Role_ROLE_ADMIN}}
	ann := &caller{user: &pb.User{Name: "ann", Role: pb.Role_ROLE_TECHNICIAN}}
	lea := &caller{user: &pb.User{Name: "lea", Role: pb.Role_ROLE_TECHNICIAN}}
	count := func(c *caller, q string) int {
		views, _, err := svc.searchPeers(c, q, false, 0, false)
		if err != nil {
			t.Fatalf("search %q: %v", q, err)
		}
		return len(views)
	}
	cases := []struct {
		c    *caller
		q    string
		want int
	}{
		{admin, "", n},
		{ann, "", n / 2},              // her list and ops
		{lea, "", 3 * n / 4},          // her list, ops, and ann's list (she leads ann)
		{admin, "tag:even", n / 2},    // every other peer
		{admin, "name:host-00042", 1}, // a single one
		{admin, "status:offline", n},
		{admin, "status:online", 0},
		{ann, "group:jumpgroup:ops tag:even", n / 4},
		{ann, "group:jumpgroup:ops tag:odd", 0},
		{ann, "user:bob", 0}, // console user bob is on bob's peers only
		{admin, "ip:10.0.3.", 256},
	}
	for _, c := range cases {
		if got := count(c.c, c.q); got != c.want {
			t.Errorf("%s searching %q: %d peers, want %d", c.c.name(), c.q, got, c.want)
		}
	}
	views, _, _ := svc.searchPeers(admin, "", false, 0, false)
	for i := 1; i < len(views); i++ {
		if views[i-1].GetPeer().GetSettings().GetName() > views[i].GetPeer().GetSettings().GetName() {
			t.Fatalf("not sorted at %d", i)
		}
	}
	// A list stops at its limit (default 1000) and says how many matched;
	// a reply always fits a control message, even for peers with long
	// comments, and a limit above the maximum is refused.
	list := func(c *caller, limit uint32) *pb.PeerList {
		t.Helper()
		r, err := svc.peerList(c, &pb.PeerListRequest{Limit: limit})
		if err != nil {
			t.Fatalf("list with limit %d: %v", limit, err)
		}
		// As a console reads it.
		raw, err := proto.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if len(raw) > control.MaxMessage {
			t.Fatalf("a reply with limit %d is %d bytes, over a control message", limit, len(raw))
		}
		var got pb.Response
		if err := proto.Unmarshal(raw, &got); err != nil {
			t.Fatal(err)
		}
		return got.GetPeers()
	}
	if l := list(admin, 0); len(l.GetPeers()) != DefaultPeerListLimit || l.GetTotal() != n ||
		l.GetPeers()[0].GetPeer().GetSettings().GetName() != "host-00000" {
		t.Fatalf("default list: %d peers of %d", len(l.GetPeers()), l.GetTotal())
	}
	if l := list(ann, MaxPeerListLimit); len(l.GetPeers()) != MaxPeerListLimit || l.GetTotal() != n/2 {
		t.Fatalf("list of %d: %d peers of %d", MaxPeerListLimit, len(l.GetPeers()), l.GetTotal())
	}
	if _, err := svc.peerList(admin, &pb.PeerListRequest{Limit: MaxPeerListLimit + 1}); catalog.CodeOf(err) != catalog.CodeInvalidArgument {
		t.Fatalf("limit above the maximum: %v", err)
	}
	long := make([]*pb.PeerView, MaxPeerListLimit)
	for i := range long {
		long[i] = proto.CloneOf(views[i])
		long[i].GetPeer().GetSettings().Comments = strings.Repeat("c", 1000)
	}
	fit := fitPeers(long, MaxPeerListLimit)
	if size := proto.Size(&pb.Response{Body: &pb.Response_Peers{Peers: &pb.PeerList{Peers: fit}}}); len(fit) == 0 || len(fit) == len(long) || size > control.MaxMessage {
		t.Fatalf("long comments: %d of %d peers fit, %d bytes", len(fit), len(long), size)
	}
	// The encoded reply stops short of a control message too.
	for _, v := range long {
		svc.peers.put(v.GetPeer())
	}
	if l := list(admin, MaxPeerListLimit); len(l.GetPeers()) == 0 || len(l.GetPeers()) == MaxPeerListLimit ||
		l.GetPeers()[0].GetPeer().GetSettings().GetComments() != long[0].GetPeer().GetSettings().GetComments() {
		t.Fatalf("long comments, encoded: %d of %d peers fit", len(l.GetPeers()), MaxPeerListLimit)
	}

	v, err := svc.resolvePeer(ann, "host-00040")
	if err != nil || v.GetPeer().GetSettings().GetName() != "host-00040" {
		t.Fatalf("resolve: %v %v", v, err)
	}
	if _, err := svc.resolvePeer(ann, "host-00041"); catalog.CodeOf(err) != catalog.CodePeerNotFound {
		t.Fatalf("ann resolved bob's peer: %v", err)
	}
}

func fakePeer(t *testing.T, i int, group string, now time.Time) *pb.Peer {
	_, pub, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPublicKey(pub)
	tag := "even"
	if i%2 == 1 {
		tag = "odd"
	}
	user := group[len("user:"):]
	return &pb.Peer{Id: []byte(id), Settings: &pb.InstallerDefaults{Name: fmt.Sprintf("host-%05d", i), Group: group, Tag: tag,
		ConnectionType: pb.ConnectionType_CONNECTION_TYPE_ACTIVE},
		Info:         &pb.PeerInfo{Hostname: fmt.Sprintf("h%d", i), PrivateIps: []string{fmt.Sprintf("10.0.%d.%d", i/256, i%256)}, ConsoleUsers: []string{user}},
		LastSeenUnix: now.Add(-time.Hour).Unix(), InstalledUnix: now.Add(-48 * time.Hour).Unix()}
}
