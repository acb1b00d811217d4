package member

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/mesh"
)

// TestRelaysKeptFromAnAnswer is the attack test of the relay list a jump's
// answer (or a jumpoint's ACL) carries, as the member keeps it: garbage,
// addresses without /p2p/, the site's own and the member's own are
// dropped; a relay named twice is kept once with both addresses; at most
// MaxRelays relays; an answer that names none keeps the last list, and the
// same list is not written again.
func TestRelaysKeptFromAnAnswer(t *testing.T) {
	site := testID(t)
	f := Files{Dir: filepath.Join(t.TempDir(), "m"), Key: "k", Config: "c.json"}
	if _, err := f.loadOrCreateKey(); err != nil {
		t.Fatal(err)
	}
	if err := f.SaveConfig(&Config{Site: site.String(), Coordinator: []string{"/ip4/192.0.2.1/tcp/4830/p2p/" + site.String()}}); err != nil {
		t.Fatal(err)
	}
	c, err := Open(f, mesh.HostConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	self := c.ID()
	addr := func(port int, id peer.ID) []byte {
		return ma.StringCast(fmt.Sprintf("/ip4/192.0.2.1/tcp/%d/p2p/%s", port, id)).Bytes()
	}
	twice := testID(t)
	raw := [][]byte{
		[]byte("garbage"),
		ma.StringCast("/ip4/192.0.2.1/tcp/1").Bytes(), // no /p2p/
		addr(2, site), addr(3, self),
		addr(4, twice), addr(5, twice),
	}
	for i := range MaxRelays + 3 {
		raw = append(raw, addr(100+i, testID(t)))
	}
	changed, err := c.LearnRelays(raw)
	if err != nil || !changed {
		t.Fatalf("LearnRelays: changed %v, %v", changed, err)
	}
	cfg, err := f.LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	infos := cfg.relayInfos(site, self)
	if len(infos) != MaxRelays {
		t.Fatalf("kept %d relays (%v), want %d", len(infos), cfg.Relays, MaxRelays)
	}
	i := slices.IndexFunc(infos, func(ai peer.AddrInfo) bool { return ai.ID == twice })
	if i < 0 || len(infos[i].Addrs) != 2 {
		t.Fatalf("the relay named twice: %v", infos)
	}
	for _, ai := range infos {
		if ai.ID == site || ai.ID == self {
			t.Fatalf("kept %s among the relays", ai.ID)
		}
	}
	for _, none := range [][][]byte{nil, {[]byte("garbage"), addr(2, site)}} {
		if changed, err := c.LearnRelays(none); changed || err != nil {
			t.Fatalf("an answer naming no relay changed the list: %v, %v", changed, err)
		}
	}
	if changed, err := c.LearnRelays(raw); changed || err != nil {
		t.Fatalf("the same list written again: %v, %v", changed, err)
	}
	if after, _ := f.LoadConfig(); !slices.Equal(after.Relays, cfg.Relays) {
		t.Fatalf("the list changed from %v to %v", cfg.Relays, after.Relays)
	}
}

func testID(t *testing.T) peer.ID {
	t.Helper()
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
