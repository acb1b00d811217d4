package scale

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	lpeer "github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/jumpmesh/jumpmesh/jumpoint"
	"github.com/jumpmesh/jumpmesh/mesh/installerkey"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/tunnel"
)

// A fleet whose installer key names jumpoints sits behind them, as a
// daemon installed with that key does (peer/jumpoint.go): each host dials
// every TCP address but the jumpoints' own through a tunnel to the
// jumpoints, in the key's order, and has no QUIC. Unlike the daemon, the
// open always carries the installer key (the daemon stops sending it once
// enrolled): a jumpoint judges a peer its ACL knows by the ACL first, so
// this changes nothing but a few bytes. There is no failover bookkeeping
// and no jumpoint pings: the fleet measures registrations through one
// jumpoint, not the peer's reaction to a dead one.

// jumpointRoute is a fleet host's way to the site through the key's
// jumpoints, or nil when the key names none.
type jumpointRoute struct {
	refs []installerkey.JumpointRef
	ids  []lpeer.ID
	own  map[string]bool // the jumpoints' TCP host:port: dialed directly
	key  string
}

func newJumpointRoute(key *installerkey.Key) *jumpointRoute {
	if len(key.Jumpoints) == 0 {
		return nil
	}
	r := &jumpointRoute{refs: key.Jumpoints, own: map[string]bool{}, key: key.Raw}
	for _, j := range key.Jumpoints {
		r.ids = append(r.ids, j.ID)
		for _, a := range j.Addrs {
			if _, hostport, err := manet.DialArgs(a); err == nil {
				r.own[hostport] = true
			}
		}
	}
	return r
}

func (r *jumpointRoute) route(address string) ([]lpeer.ID, *pb.TunnelOpen, bool) {
	if r.own[address] {
		return nil, nil, false
	}
	return r.ids, &pb.TunnelOpen{InstallerKey: r.key}, true
}

// dialer is a new host's tunnel dialer; give it the host with bind.
func (r *jumpointRoute) dialer() *tunnel.Dialer { return tunnel.NewDialer(r.route) }

// bind lets h open the tunnels and tells it where the jumpoints are;
// jumpoints whose key entry has a link port are reached over peer links,
// as the daemon does.
func (r *jumpointRoute) bind(d *tunnel.Dialer, h host.Host) {
	d.SetHost(h)
	links := map[lpeer.ID][]string{}
	for _, j := range r.refs {
		if j.PeerPort > 0 {
			links[j.ID] = tunnel.LinkAddrs(j.Addrs, j.PeerPort, nil)
		}
	}
	if len(links) > 0 {
		d.SetLinks(&tunnel.Links{Addrs: func(j lpeer.ID) []string { return links[j] }, Key: h.Peerstore().PrivKey(h.ID())})
	}
	for _, j := range r.refs {
		h.Peerstore().AddAddrs(j.ID, j.Addrs, peerstore.PermanentAddrTTL)
	}
}

// StartJumpoint enrolls a jumpoint named name in the site, runs it on a
// loopback TCP port (the real daemon, jumpoint.New, in this process) and
// returns it with an installer key that names it: a fleet made with that
// key registers through it. The caller closes the jumpoint.
func (s *Site) StartJumpoint(ctx context.Context, name string) (*jumpoint.Jumpoint, string, error) {
	resp, err := s.Do(ctx, &pb.Request{Body: &pb.Request_UserInvite{UserInvite: &pb.UserInviteRequest{
		Name: name, Role: pb.Role_ROLE_JUMPOINT, ValidForSeconds: int64(time.Hour / time.Second)}}})
	if err != nil {
		return nil, "", fmt.Errorf("jumpoint invite: %w", err)
	}
	j, err := jumpoint.New(ctx, jumpoint.Config{
		DataDir: filepath.Join(s.cfg.Dir, name), Coordinator: s.Coord.LoginAddrs()[0].String(),
		Invite: resp.GetInvite().GetCode(), Listen: []string{"/ip4/127.0.0.1/tcp/0"}, HTTPAddr: "off",
		// Peers enrolling through it are served at once by the installer
		// key (rule 2); the ACL catches up at its own pace.
		Logger: s.cfg.Logger,
	})
	if err != nil {
		return nil, "", fmt.Errorf("starting jumpoint %s: %w", name, err)
	}
	create := &pb.InstallerCreateRequest{Defaults: &pb.InstallerDefaults{Tag: "scale"}, Jumpoints: []string{name},
		ValidForSeconds: int64(365 * 24 * time.Hour / time.Second)}
	in, err := s.Do(ctx, &pb.Request{Body: &pb.Request_InstallerCreate{InstallerCreate: create}})
	if err != nil {
		j.Close()
		return nil, "", fmt.Errorf("installer key naming jumpoint %s: %w", name, err)
	}
	return j, in.GetInstaller().GetKey(), nil
}
