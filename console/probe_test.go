package console_test

import (
	"context"
	"crypto/rand"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-msgio/pbio"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/probe"
)

// TestProbeRefusesStrangers is the attack of a host the console never
// chose to reach (a stranger who found its listening port, or a site
// member it has no session with) asking it to probe: the console answers
// nothing — no side, no grant, no packet — and keeps no record of it.
func TestProbeRefusesStrangers(t *testing.T) {
	dir := t.TempDir()
	res, err := coordinator.InitSite(coordinator.InitConfig{DataDir: filepath.Join(dir, "site"), HTTPAddr: "off",
		Listen: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		t.Fatal(err)
	}
	coord, err := coordinator.New(coordinator.Config{DataDir: filepath.Join(dir, "site")})
	if err != nil {
		t.Fatal(err)
	}
	defer coord.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, err := console.Login(ctx, filepath.Join(dir, "home"), coord.LoginAddrs()[0].String(), res.InviteCode)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	key, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	stranger, err := mesh.NewHost(mesh.HostConfig{Key: key, ListenAddrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")}})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	var loop []ma.Multiaddr
	for _, a := range c.Host().Addrs() {
		if v, err := a.ValueForProtocol(ma.P_IP4); err == nil && v == "127.0.0.1" {
			loop = append(loop, a)
		}
	}
	if err := stranger.Connect(ctx, peer.AddrInfo{ID: c.Host().ID(), Addrs: loop}); err != nil {
		t.Fatal(err)
	}
	s, err := stranger.NewStream(ctx, c.Host().ID(), probe.Protocol)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(10 * time.Second))
	offer := &pb.ProbeOffer{Side: &pb.ProbeSide{Kind: "random", PublicIp: "127.0.0.1"}, Key: make([]byte, 16)}
	_ = pbio.NewDelimitedWriter(s).WriteMsg(offer)
	var answer pb.ProbeAnswer
	if err := pbio.NewDelimitedReader(s, 4096).ReadMsg(&answer); err == nil {
		t.Fatalf("a stranger got an answer: %v", &answer)
	}
	if _, ok := c.ProbeResult(stranger.ID()); ok {
		t.Fatal("the console recorded an exchange with a stranger")
	}
}
