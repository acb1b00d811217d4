package tunnel

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/frame"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// A peer link is a tunnel over a plain TCP connection from a host on the
// jumpoint's network, instead of a stream over a libp2p connection to the
// jumpoint. A peer behind a jumpoint needs the jumpoint for one thing, a
// pipe to its coordinator, inside which it runs its own TLS connection
// end to end; a libp2p connection to the jumpoint around that pipe costs
// the jumpoint 43 KiB and a TLS handshake per peer (docs/performance.md,
// "Jumpoints") and protects nothing the inner connection does not. A link
// costs a TCP connection and a signature check.
//
//  1. The caller connects to the jumpoint's link port (DefaultLinkPort on
//     the jumpoint's addresses; the installer key says which port,
//     pb.JumpointRef.peer_port). The jumpoint writes LinkMagic and a
//     32-byte challenge.
//  2. The caller writes one TunnelOpen, length-delimited, whose link field
//     carries its libp2p public key, its signature over LinkDomain + the
//     jumpoint's peer ID + the challenge + the target, and the TCP ports
//     it listens on.
//  3. The jumpoint checks the signature: the caller is then the peer ID
//     of that key, and the open is authorized as on a stream (the
//     jumpoint passes only a peer's own rules: its site, or enrolling).
//     From then on as steps 2 and 3 of the stream protocol.
//
// What the link does not give, on purpose: the jumpoint is not
// authenticated to the caller (the inner connection authenticates the
// coordinator), and the TCP connection is not protected after the proof,
// so a host that can take over TCP connections on that network can use a
// peer's link to reach the coordinator as a stranger, as it could from
// anywhere on the Internet, and can read only the inner connection's
// ciphertext. The challenge binds a proof to one jumpoint and one
// connection, so a recorded proof is of no use.

// LinkMagic starts the jumpoint's side of a link.
const LinkMagic = "JMLINK1\n"

// LinkDomain separates a link proof from every other signature a key makes.
const LinkDomain = "jumpmesh peer link v1\n"

// DefaultLinkPort is the jumpoint's link port, after its libp2p port 4833
// and its local metrics port 4834.
const DefaultLinkPort = 4835

const challengeSize = 32

// Link keepalive: a jumpoint that vanishes (its host lost power) ends the
// link within about LinkKeepIdle + LinkKeepCount × LinkKeepInterval when
// idle, or LinkUserTimeout with data unacknowledged, so the peer moves to
// another jumpoint well within the 30 s a peer may be away.
const (
	LinkKeepIdle     = 5 * time.Second
	LinkKeepInterval = 2 * time.Second
	LinkKeepCount    = 3
	LinkUserTimeout  = 12 * time.Second
)

// DefaultMaxLinkHandshakes bounds links that have not yet proven who they
// are: a stranger's connections cost at most this many goroutines and
// slots for at most OpenTimeout each; more wait in the listen queue.
const DefaultMaxLinkHandshakes = 256

// DefaultMaxLinksPerPeer bounds one caller's links (a peer holds one to
// its coordinator, a few while it reconnects).
const DefaultMaxLinksPerPeer = 16

// linkProof is what a caller signs.
func linkProof(jumpoint peer.ID, challenge []byte, target string) []byte {
	b := make([]byte, 0, len(LinkDomain)+len(jumpoint)+len(challenge)+len(target))
	b = append(b, LinkDomain...)
	b = append(b, jumpoint...)
	b = append(b, challenge...)
	return append(b, target...)
}

// DialLink opens a tunnel to open's target over a link to the jumpoint j at
// addr (host:port), proving key's identity. listen are the TCP ports the
// caller listens on at the address it connects from. The returned conn's
// RemoteAddr is the target.
func DialLink(ctx context.Context, addr string, j peer.ID, key crypto.PrivKey, listen []uint32, open *pb.TunnelOpen) (net.Conn, error) {
	remote, err := net.ResolveTCPAddr("tcp", open.GetTarget())
	if err != nil {
		return nil, catalog.Errorf(catalog.CodeInvalidArgument, "(tunnel target %q: %v)", open.GetTarget(), err)
	}
	ctx, cancel := context.WithTimeout(ctx, OpenTimeout)
	defer cancel()
	unreachable := func(what string, err error) error {
		return catalog.Errorf(catalog.CodeJumpointUnreachable, "(jumpoint %s at %s: %s: %v)", j, addr, what, err)
	}
	d := net.Dialer{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: LinkKeepIdle, Interval: LinkKeepInterval, Count: LinkKeepCount},
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(LinkUserTimeout/time.Millisecond))
			}); err != nil {
				return err
			}
			return serr
		}}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, unreachable("connecting", err)
	}
	tc := c.(*net.TCPConn)
	ok := false
	defer func() {
		if !ok {
			tc.Close()
		}
	}()
	stop := context.AfterFunc(ctx, func() { tc.SetDeadline(time.Now()) })
	defer stop()
	hello := make([]byte, len(LinkMagic)+challengeSize)
	if _, err := io.ReadFull(tc, hello); err != nil {
		return nil, unreachable("reading its challenge", err)
	}
	if string(hello[:len(LinkMagic)]) != LinkMagic {
		return nil, unreachable("its greeting", errors.New("not a jumpoint's peer link"))
	}
	pub, err := crypto.MarshalPublicKey(key.GetPublic())
	if err != nil {
		return nil, err
	}
	sig, err := key.Sign(linkProof(j, hello[len(LinkMagic):], open.GetTarget()))
	if err != nil {
		return nil, fmt.Errorf("signing the link proof: %w", err)
	}
	o := &pb.TunnelOpen{Target: open.GetTarget(), Grant: open.GetGrant(), InstallerKey: open.GetInstallerKey(),
		Link: &pb.LinkAuth{PublicKey: pub, Signature: sig, ListenPorts: listen}}
	if err := frame.NewWriter(tc).WriteMsg(o); err != nil {
		return nil, unreachable("sending the open", err)
	}
	var reply pb.TunnelReply
	if err := readExact(tc, MaxOpen, &reply); err != nil {
		return nil, unreachable("reading the reply", err)
	}
	if reply.GetError() != nil {
		return nil, catalog.ErrorFromPB(reply.GetError())
	}
	if !stop() {
		return nil, unreachable("opening", ctx.Err())
	}
	_ = tc.SetDeadline(time.Time{})
	ok = true
	return &linkConn{TCPConn: tc, target: remote}, nil
}

// linkConn is a link as the caller's net.Conn (RemoteAddr is the target)
// and as the jumpoint's caller (Reset aborts the connection).
type linkConn struct {
	*net.TCPConn
	target *net.TCPAddr
}

func (c *linkConn) RemoteAddr() net.Addr {
	if c.target != nil {
		return c.target
	}
	return c.TCPConn.RemoteAddr()
}

// LocalAddr is the unspecified TCP address, as for a stream tunnel.
func (c *linkConn) LocalAddr() net.Addr {
	if c.target != nil {
		return &net.TCPAddr{IP: net.IPv4zero}
	}
	return c.TCPConn.LocalAddr()
}

// Reset aborts the connection (RST), as a stream's Reset does.
func (c *linkConn) Reset() error {
	_ = c.SetLinger(0)
	return c.Close()
}

// ServeLinks accepts peer links on l until l is closed (Close closes it).
// A link's open passes filter (the caller proven by its signature) and
// then the server's Authorize; a jumpoint's filter lets through only what
// a peer of its own needs (no grants: technicians use streams).
func (s *Server) ServeLinks(l net.Listener, filter Authorize) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return
	}
	s.listeners = append(s.listeners, l)
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	handshakes := make(chan struct{}, s.cfg.MaxLinkHandshakes)
	var tempDelay time.Duration
	for {
		// A slot before the accept: past the bound, callers wait in the
		// listen queue instead of being reset, so a storm of peers (all of
		// them after the jumpoint restarts) is served in turn rather than
		// sent into their backoff.
		handshakes <- struct{}{}
		c, err := l.Accept()
		if err != nil {
			var ne net.Error
			<-handshakes
			if errors.As(err, &ne) && ne.Timeout() { // EMFILE and the like: back off, as net/http does
				tempDelay = min(max(2*tempDelay, 5*time.Millisecond), time.Second)
				time.Sleep(tempDelay)
				continue
			}
			return
		}
		tempDelay = 0
		tc, ok := c.(*net.TCPConn)
		if !ok {
			<-handshakes
			c.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveLink(tc, filter, handshakes)
		}()
	}
}

// serveLink runs one link; it frees its handshake slot once the caller
// has proven who it is (or failed to).
func (s *Server) serveLink(tc *net.TCPConn, filter Authorize, handshakes chan struct{}) {
	_ = tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: LinkKeepIdle, Interval: LinkKeepInterval, Count: LinkKeepCount})
	c := &linkConn{TCPConn: tc}
	var once sync.Once
	release := func() { once.Do(func() { <-handshakes }) }
	defer release()
	var linked peer.ID
	var listenAddrs []string
	s.serve(c, "", func() (peer.ID, *pb.TunnelOpen, error) {
		defer release()
		challenge := make([]byte, challengeSize)
		if _, err := rand.Read(challenge); err != nil {
			return "", nil, err
		}
		if _, err := tc.Write(append([]byte(LinkMagic), challenge...)); err != nil {
			return "", nil, err
		}
		var open pb.TunnelOpen
		if err := readExact(tc, MaxOpen, &open); err != nil {
			return "", nil, err
		}
		remote, err := s.verifyLink(&open, challenge)
		if err != nil {
			return "", nil, err
		}
		if err := filter(remote, &open); err != nil {
			return "", nil, err
		}
		listenAddrs = linkListenAddrs(tc.RemoteAddr(), open.GetLink().GetListenPorts())
		if !s.linkUp(remote, listenAddrs) {
			return "", nil, catalog.Errorf(catalog.CodeServerBusy, "(the caller holds %d links to this jumpoint, its limit)", s.cfg.MaxLinksPerPeer)
		}
		linked = remote
		return remote, &open, nil
	})
	if linked != "" {
		s.linkDown(linked, listenAddrs)
	}
}

// verifyLink checks the open's proof against this server's challenge and
// returns the caller's peer ID.
func (s *Server) verifyLink(open *pb.TunnelOpen, challenge []byte) (peer.ID, error) {
	denied := func(why string) error {
		return catalog.Errorf(catalog.CodePermissionDenied, "(peer link: %s)", why)
	}
	link := open.GetLink()
	if link == nil {
		return "", denied("no proof of identity")
	}
	pub, err := crypto.UnmarshalPublicKey(link.GetPublicKey())
	if err != nil {
		return "", denied("unreadable public key")
	}
	ok, err := pub.Verify(linkProof(s.h.ID(), challenge, open.GetTarget()), link.GetSignature())
	if err != nil || !ok {
		return "", denied("the signature does not match this jumpoint's challenge")
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		return "", denied("no peer ID for the key")
	}
	return id, nil
}

// linkListenAddrs are the caller's listen ports at the IP address its
// link comes from: a caller may name any port, never another host.
func linkListenAddrs(from net.Addr, ports []uint32) []string {
	ap, err := netip.ParseAddrPort(from.String())
	if err != nil {
		return nil
	}
	out := make([]string, 0, min(len(ports), 8))
	for _, p := range ports {
		if p == 0 || p > 65535 || len(out) == 8 {
			continue
		}
		out = append(out, net.JoinHostPort(ap.Addr().Unmap().String(), strconv.Itoa(int(p))))
	}
	return out
}

// linkUp records a live link of remote and where it listens; false (and
// nothing recorded) when remote already holds MaxLinksPerPeer links.
func (s *Server) linkUp(remote peer.ID, addrs []string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	lp := s.links[remote]
	if lp == nil {
		lp = &linkPeer{addrs: map[string]int{}}
		s.links[remote] = lp
	}
	if lp.links >= s.cfg.MaxLinksPerPeer {
		return false
	}
	lp.links++
	for _, a := range addrs {
		lp.addrs[a]++
	}
	return true
}

func (s *Server) linkDown(remote peer.ID, addrs []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lp := s.links[remote]
	if lp == nil {
		return
	}
	lp.links--
	for _, a := range addrs {
		if lp.addrs[a]--; lp.addrs[a] <= 0 {
			delete(lp.addrs, a)
		}
	}
	if lp.links <= 0 {
		delete(s.links, remote)
	}
}

// linkPeer is what the server knows of one caller's live links.
type linkPeer struct {
	links int
	addrs map[string]int // where it listens: address → links naming it
}

// LinkAddrs are the TCP addresses (host:port) where p listens, as its live
// links say: the IP address each link comes from with the ports it named.
func (s *Server) LinkAddrs(p peer.ID) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	lp := s.links[p]
	if lp == nil {
		return nil
	}
	out := make([]string, 0, len(lp.addrs))
	for a := range lp.addrs {
		out = append(out, a)
	}
	return out
}

// LinkedPeers are the callers with a live link.
func (s *Server) LinkedPeers() []peer.ID {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]peer.ID, 0, len(s.links))
	for p := range s.links {
		out = append(out, p)
	}
	return out
}

// readExact reads one length-delimited message of at most max bytes from r
// without reading past it: the bytes behind a reply (or an open) are the
// tunnel's, and a buffered reader would swallow what arrives with it (the
// coordinator's side of a handshake that starts at once, on a TCP link).
func readExact(r io.Reader, max int, m proto.Message) error {
	n, err := binary.ReadUvarint(byteReader{r})
	if err != nil {
		return err
	}
	if n > uint64(max) {
		return fmt.Errorf("%w (%d bytes declared, %d allowed)", frame.ErrTooLarge, n, max)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return err
	}
	return proto.Unmarshal(buf, m)
}

// byteReader reads one byte at a time (a varint is at most 10 of them).
type byteReader struct{ r io.Reader }

func (b byteReader) ReadByte() (byte, error) {
	var one [1]byte
	if _, err := io.ReadFull(b.r, one[:]); err != nil {
		return 0, err
	}
	return one[0], nil
}

// LinkAddrs are a jumpoint's link addresses: each IP address of addrs with
// the link port, those inside one of local's prefixes (a network this
// host is on) first, since the others may be on a network it cannot reach.
func LinkAddrs(addrs []ma.Multiaddr, port uint32, local []netip.Prefix) []string {
	var near, far []string
	seen := map[netip.Addr]bool{}
	for _, a := range addrs {
		if _, err := a.ValueForProtocol(ma.P_CIRCUIT); err == nil {
			continue
		}
		ip, err := manet.ToIP(a)
		if err != nil {
			continue
		}
		addr, ok := netip.AddrFromSlice(ip)
		if !ok || seen[addr.Unmap()] {
			continue
		}
		addr = addr.Unmap()
		seen[addr] = true
		hp := net.JoinHostPort(addr.String(), strconv.Itoa(int(port)))
		if slices.ContainsFunc(local, func(p netip.Prefix) bool { return p.Contains(addr) }) {
			near = append(near, hp)
		} else {
			far = append(far, hp)
		}
	}
	return append(near, far...)
}

// LocalPrefixes are the networks of this host's interfaces.
func LocalPrefixes() []netip.Prefix {
	ifAddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Prefix
	for _, a := range ifAddrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Masked())
		}
	}
	return out
}
