package jumpoint

import (
	"fmt"
	"net"
	"strconv"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/tunnel"
)

// Peer links (mesh/tunnel link.go): peers behind the jumpoint reach the
// site over a plain TCP connection to the link port, proven by a
// signature, instead of a libp2p connection to the jumpoint: 16 KiB a peer
// instead of 62, and no TLS handshake at the jumpoint when they all
// register at once (docs/performance.md, "Jumpoints"). The port is
// reported with the jumpoint's addresses, so installer keys made from then
// on carry it; peers installed earlier keep using streams.

// listenLinks opens the link listeners, on the IP addresses of the TCP
// listen addresses, before the first ACL fetch reports the port; they are
// served once the tunnel server exists (serveLinks).
func (j *Jumpoint) listenLinks(listen []ma.Multiaddr) error {
	if j.cfg.PeerPort < 0 {
		return nil
	}
	var ips []string
	port := j.cfg.PeerPort
	ephemeral := true
	for _, a := range listen {
		network, hostport, err := manet.DialArgs(a)
		if err != nil || (network != "tcp" && network != "tcp4" && network != "tcp6") {
			continue
		}
		host, p, err := net.SplitHostPort(hostport)
		if err != nil {
			continue
		}
		if p != "0" {
			ephemeral = false
		}
		ips = append(ips, host)
	}
	if port == 0 && !ephemeral {
		port = tunnel.DefaultLinkPort
	}
	for _, ip := range ips {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
		if err != nil {
			return catalog.Errorf(catalog.CodeInvalidArgument, "(listening for peer links on %s port %d: %v; choose another with --peer-port, or -1 for none)", ip, port, err)
		}
		j.links = append(j.links, l)
		if port == 0 { // the first ephemeral port is every listener's
			port = l.Addr().(*net.TCPAddr).Port
		}
	}
	if len(j.links) > 0 {
		j.linkPort = uint32(port)
	}
	return nil
}

// serveLinks serves the listeners through the tunnel server, which closes
// them and waits for their links in its Close.
func (j *Jumpoint) serveLinks() {
	for _, l := range j.links {
		go j.tunnels.ServeLinks(l, linkFilter)
	}
}

// closeLinks closes listeners a failed New left unserved.
func (j *Jumpoint) closeLinks() {
	for _, l := range j.links {
		l.Close()
	}
}

// linkFilter: a link carries a host's own traffic to its site, so an open
// with a grant (a technician's) is refused; technicians reach the
// jumpoint over libp2p, where their tunnels are logged and audited.
func linkFilter(_ peer.ID, open *pb.TunnelOpen) error {
	if open.GetGrant() != nil {
		return catalog.Errorf(catalog.CodePermissionDenied, "(a peer link carries a host's own traffic to its site; technicians open tunnels over libp2p)")
	}
	return nil
}

// peerAddrs are where a peer behind the jumpoint listens: what its libp2p
// connection told (hostPeerAddrs) and what its live links name, each at
// the IP address the peer connects from.
func (j *Jumpoint) peerAddrs(p peer.ID) []string {
	out := hostPeerAddrs(j.host)(p)
	if j.tunnels != nil {
		out = append(out, j.tunnels.LinkAddrs(p)...)
	}
	return out
}

// LinkPort is the peer-link port, 0 when the jumpoint has none.
func (j *Jumpoint) LinkPort() uint32 { return j.linkPort }

func (j *Jumpoint) linkAddrString() string {
	if j.linkPort == 0 {
		return "off"
	}
	return fmt.Sprint(j.linkPort)
}
