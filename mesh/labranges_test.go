package mesh_test

import (
	"errors"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/p2p/host/observedaddrs"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/jumpmesh/jumpmesh/mesh"
)

// go-libp2p's package variables are set at process start, never while
// hosts run (issue 12 #8): the observer threshold by mesh's init, the lab's
// ranges only before the first host.
func TestLibp2pGlobalsSetBeforeHosts(t *testing.T) {
	if observedaddrs.ActivationThresh != 2 {
		t.Errorf("observedaddrs.ActivationThresh = %d before any host, want 2", observedaddrs.ActivationThresh)
	}
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := mesh.NewHost(mesh.HostConfig{Key: key, ListenAddrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	lab := ma.StringCast("/ip4/203.0.113.7/tcp/4001")
	if manet.IsPublicAddr(lab) {
		t.Fatal("a lab address is public without the lab switch")
	}
	if err := mesh.EnableLabPublicRanges(); !errors.Is(err, mesh.ErrHostsRunning) {
		t.Errorf("EnableLabPublicRanges with a host running: %v, want ErrHostsRunning", err)
	}
	if manet.IsPublicAddr(lab) {
		t.Error("EnableLabPublicRanges changed go-multiaddr's classes while a host runs")
	}
}
