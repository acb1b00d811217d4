package peer

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/mesh/installerkey"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

const (
	jumpointA = "12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK"
	jumpointB = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
)

// TestNewConfigKeepsTheKeysJumpoints: the key's jumpoints, in its order,
// with their names and addresses, are what the peer's config keeps.
func TestNewConfigKeepsTheKeysJumpoints(t *testing.T) {
	a, b := mustDecode(t, jumpointA), mustDecode(t, jumpointB)
	key := &installerkey.Key{Body: &pb.InstallerKeyBody{}, Site: b, Jumpoints: []installerkey.JumpointRef{
		{ID: a, Name: "plant-a", Addrs: []ma.Multiaddr{ma.StringCast("/ip4/10.20.0.5/tcp/4833"), ma.StringCast("/ip4/10.20.0.5/udp/4833/quic-v1")}},
		{ID: b, Name: "plant-b", Addrs: []ma.Multiaddr{ma.StringCast("/ip4/10.20.0.6/tcp/4833")}},
	}}
	c := newConfig(key, InstallOptions{}, time.Now())
	if len(c.Jumpoints) != 2 || c.Jumpoints[0].ID != jumpointA || c.Jumpoints[0].Name != "plant-a" || len(c.Jumpoints[0].Addrs) != 2 ||
		c.Jumpoints[1].ID != jumpointB || c.Jumpoints[1].Addrs[0] != "/ip4/10.20.0.6/tcp/4833" {
		t.Fatalf("config jumpoints %+v", c.Jumpoints)
	}
	r, err := newJumpointRoute(c, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if !r.own["10.20.0.5:4833"] || !r.own["10.20.0.6:4833"] || len(r.own) != 2 {
		t.Errorf("direct addresses %v, want the two jumpoints' TCP ones", r.own)
	}
	if ids, _, ok := r.route("10.20.0.5:4833"); ok || ids != nil {
		t.Error("the jumpoint's own address goes through a tunnel")
	}
	ids, open, ok := r.route("198.51.100.7:4001")
	if !ok || len(ids) != 2 || ids[0] != a || ids[1] != b || open.GetInstallerKey() != c.InstallerKey {
		t.Errorf("route to the coordinator: %v %v %v", ids, open, ok)
	}
	// After a loss the other jumpoint goes first.
	r.markLost(a, "test", nil)
	if ids, _, _ := r.route("198.51.100.7:4001"); ids[0] != b || ids[1] != a {
		t.Errorf("after losing %s: %v", a, ids)
	}
}

// TestConfigReadsTheOldJumpointField: a config.json of an install made
// when a key named one jumpoint by ID still loads, with that jumpoint.
func TestConfigReadsTheOldJumpointField(t *testing.T) {
	dir := t.TempDir()
	raw := `{"version": 1, "site": "` + jumpointB + `", "jumpoint": "` + jumpointA + `"}`
	if err := os.WriteFile(filepath.Join(dir, configFile), []byte(raw), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Jumpoints) != 1 || c.Jumpoints[0].ID != jumpointA || c.LegacyJumpoint != "" {
		t.Fatalf("jumpoints %+v, legacy %q", c.Jumpoints, c.LegacyJumpoint)
	}
}

func mustDecode(t *testing.T, s string) peer.ID {
	t.Helper()
	id, err := peer.Decode(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
