package console

import (
	"context"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/control"
	"github.com/jumpmesh/jumpmesh/mesh/member"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Direct is a console home's control connection without a libp2p host
// (control.Conn), for `jumpmesh ls`: a command that makes a call or two
// and exits pays for a host more than for its list (issue 16: `ls` at
// 100,000 stored peers, p99 ≤ 20 ms end to end). It lists peers and
// jumpoints as Client does, with the same requests, and keeps the
// coordinator addresses and the lane an answer tells in the home's config
// as Client does (member.Files.KeepAnswer), so that a technician who only
// lists still knows every coordinator when one dies.
type Direct struct {
	conn  *control.Conn
	files member.Files
	// cfg is the home's config as OpenDirect read it, for site.
	cfg  *member.Config
	site peer.ID
}

// OpenDirect reads home's key and site and connects to the coordinator's
// members' lane, else the site's TCP addresses, directly. Any error means nothing was asked: open the console
// (Open) instead, which also reaches a coordinator through its lane or
// relays and says what is wrong with a home.
func OpenDirect(ctx context.Context, home string) (*Direct, error) {
	f := files(home)
	cfg, err := f.LoadConfig()
	if err != nil {
		return nil, err
	}
	site, err := cfg.SiteInfo()
	if err != nil {
		return nil, err
	}
	key, err := f.LoadKey()
	if err != nil {
		return nil, err
	}
	key = mesh.ShortLivedKey(key) // one TLS certificate to sign, then the process exits
	// The members' lane alone first, as a member connects (mesh/member's
	// LaneHead): during a storm the site's own port queues behind peers.
	var lane []ma.Multiaddr
	for _, s := range cfg.Lane {
		if a, err := ma.NewMultiaddr(s); err == nil {
			lane = append(lane, a)
		}
	}
	if len(lane) > 0 {
		laneCtx, cancel := context.WithTimeout(ctx, member.LaneHead)
		conn, err := control.DialDirect(laneCtx, key, site.ID, lane)
		cancel()
		if err == nil {
			return &Direct{conn: conn, files: f, cfg: cfg, site: site.ID}, nil
		}
	}
	conn, err := control.DialDirect(ctx, key, site.ID, site.Addrs)
	if err != nil {
		return nil, err
	}
	return &Direct{conn: conn, files: f, cfg: cfg, site: site.ID}, nil
}

// call makes one request and keeps what its answer tells of the site.
func (d *Direct) call(ctx context.Context, req *pb.Request) (*pb.Response, error) {
	r, err := d.conn.Call(ctx, req)
	if err == nil {
		_ = d.files.KeepAnswer(d.cfg, d.site, r) // a file that cannot be written now is written by a later answer
	}
	return r, err
}

// PeerPageView is Client.PeerPageView on this connection.
func (d *Direct) PeerPageView(ctx context.Context, query string, includeDeleted bool, limit int, view pb.PeerListView) ([]*pb.PeerView, int, error) {
	r, err := d.call(ctx, peerListRequest(query, includeDeleted, limit, view))
	return r.GetPeers().GetPeers(), int(r.GetPeers().GetTotal()), err
}

// Jumpoints is Client.Jumpoints on this connection.
func (d *Direct) Jumpoints(ctx context.Context) ([]*pb.JumpointView, error) {
	r, err := d.call(ctx, &pb.Request{Body: &pb.Request_JumpointList{JumpointList: &pb.Empty{}}})
	return r.GetJumpoints().GetJumpoints(), err
}

// Close closes the connection.
func (d *Direct) Close() error { return d.conn.Close() }
