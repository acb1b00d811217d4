package console

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// TestPeerCacheKeepsTheSameAddressesInAnyOrder: the coordinator lists a
// peer's addresses in no fixed order; noting the same ones again, in
// another order, leaves the file as it was (no write, no fsync on the
// jump's path), and new ones replace them.
func TestPeerCacheKeepsTheSameAddressesInAnyOrder(t *testing.T) {
	p := &peerCache{path: filepath.Join(t.TempDir(), PeerCacheFile)}
	key, _, _ := crypto.GenerateEd25519Key(nil)
	id, _ := peer.IDFromPrivateKey(key)
	addrs := []ma.Multiaddr{ma.StringCast("/ip4/192.0.2.2/tcp/4831"), ma.StringCast("/ip4/127.0.0.1/tcp/4831"), ma.StringCast("/ip6/::1/tcp/4831")}
	inode := func() uint64 {
		fi, err := os.Stat(p.path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	p.note("web-01", id, addrs)
	first := inode()
	p.note("web-01", id, []ma.Multiaddr{addrs[2], addrs[0], addrs[1]})
	if inode() != first {
		t.Error("the same addresses in another order were written again")
	}
	if info, ok := p.lookup("web-01"); !ok || info.ID != id || len(info.Addrs) != 3 {
		t.Fatalf("lookup: %v %v", info, ok)
	}
	moved := []ma.Multiaddr{ma.StringCast("/ip4/192.0.2.9/tcp/4831")}
	p.note("web-01", id, moved)
	if info, _ := p.lookup("web-01"); inode() == first || !slices.EqualFunc(info.Addrs, moved, ma.Multiaddr.Equal) {
		t.Errorf("new addresses not recorded: %v", info.Addrs)
	}
}
