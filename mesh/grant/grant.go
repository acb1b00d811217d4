// Package grant signs and verifies jump grants: the coordinator's signed
// permission for one technician (by console peer ID) to open sessions with
// a set of capabilities on one peer for at most MaxLifetime.
//
// The peer verifies a grant against the site key it pinned at install (a
// site's peer ID embeds its Ed25519 key), that it names the peer itself and
// the remote authenticated by the secure channel, that it has not expired, and — with a
// NonceCache — that its nonce was not used before. The signature covers
// "jumpmesh jump grant v1\n" + body, so no other signed object of the site
// (an installer key) can pass as a grant.
//
// Pure: no network, no files.
package grant

import (
	"crypto/rand"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Version is the grant format this package writes.
const Version = 1

// MaxLifetime bounds a grant's validity.
const MaxLifetime = 60 * time.Second

const signingDomain = "jumpmesh jump grant v1\n"

// Capability bits.
const (
	Shell        = uint32(pb.Capability_CAPABILITY_SHELL)
	Exec         = uint32(pb.Capability_CAPABILITY_EXEC)
	Forward      = uint32(pb.Capability_CAPABILITY_FORWARD)
	FileTransfer = uint32(pb.Capability_CAPABILITY_FILE_TRANSFER)
	All          = Shell | Exec | Forward | FileTransfer
)

// CapabilityName is the word for one capability bit.
func CapabilityName(c uint32) string {
	switch c {
	case Shell:
		return "shell"
	case Exec:
		return "exec"
	case Forward:
		return "forward"
	case FileTransfer:
		return "file-transfer"
	}
	return fmt.Sprintf("capability-%d", c)
}

// Sign fills the nonce and version of body and signs it.
func Sign(body *pb.JumpGrantBody, signer mesh.Signer) (*pb.JumpGrant, error) {
	body = proto.CloneOf(body)
	body.Version = Version
	if len(body.GetNonce()) == 0 {
		body.Nonce = make([]byte, 16)
		if _, err := rand.Read(body.Nonce); err != nil {
			return nil, err
		}
	}
	if peer.ID(body.GetSiteId()) != signer.PeerID() {
		return nil, fmt.Errorf("grant names site %s but the signer is %s", peer.ID(body.GetSiteId()), signer.PeerID())
	}
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(body)
	if err != nil {
		return nil, err
	}
	sig, err := signer.Sign(append([]byte(signingDomain), raw...))
	if err != nil {
		return nil, fmt.Errorf("signing grant: %w", err)
	}
	return &pb.JumpGrant{Body: raw, Signature: sig}, nil
}

// Check says what Verify checks the grant against.
type Check struct {
	Site       peer.ID // the pinned site
	Peer       peer.ID // the verifying peer itself
	Technician peer.ID // the authenticated remote
	Capability uint32  // the capability the channel needs
	Now        time.Time
	// IgnoreExpiry skips the expiry check, for NonceCache.Use to decide:
	// a grant already bound to a live connection stays good on it.
	IgnoreExpiry bool
}

// Verify checks g against c and returns its body. Each failure is a
// catalog error with code grant_invalid, naming what failed.
func Verify(g *pb.JumpGrant, c Check) (*pb.JumpGrantBody, error) {
	if g == nil || len(g.GetBody()) == 0 {
		return nil, mesh.Errorf(mesh.CodeGrantInvalid, "(no grant)")
	}
	if err := mesh.VerifySignature(c.Site, append([]byte(signingDomain), g.GetBody()...), g.GetSignature()); err != nil {
		return nil, mesh.Errorf(mesh.CodeGrantInvalid, "(signature: %v)", err)
	}
	body := new(pb.JumpGrantBody)
	if err := proto.Unmarshal(g.GetBody(), body); err != nil {
		return nil, mesh.Errorf(mesh.CodeGrantInvalid, "(body: %v)", err)
	}
	switch {
	case body.GetVersion() != Version:
		return nil, mesh.Errorf(mesh.CodeGrantInvalid, "(version %d)", body.GetVersion())
	case peer.ID(body.GetSiteId()) != c.Site:
		return nil, mesh.Errorf(mesh.CodeGrantInvalid, "(another site)")
	case peer.ID(body.GetPeer()) != c.Peer:
		return nil, mesh.Errorf(mesh.CodeGrantInvalid, "(the grant is for another peer)")
	case peer.ID(body.GetTechnician()) != c.Technician:
		return nil, mesh.Errorf(mesh.CodeGrantInvalid, "(the grant is for another technician)")
	case time.Unix(body.GetExpiresUnix(), 0).Sub(time.Unix(body.GetIssuedUnix(), 0)) > MaxLifetime:
		return nil, mesh.Errorf(mesh.CodeGrantInvalid, "(lifetime over %s)", MaxLifetime)
	case !c.IgnoreExpiry && !c.Now.Before(time.Unix(body.GetExpiresUnix(), 0)):
		return nil, mesh.Errorf(mesh.CodeGrantInvalid, "(expired at %s)", time.Unix(body.GetExpiresUnix(), 0).UTC().Format(time.RFC3339))
	case c.Capability != 0 && body.GetCapabilities()&c.Capability == 0:
		return nil, mesh.Errorf(mesh.CodePermissionDenied, "(the session policy does not allow %s)", CapabilityName(c.Capability))
	}
	return body, nil
}

// Conn is what a grant is bound to on first use: the authenticated
// connection it arrived on (a libp2p network.Conn).
type Conn interface {
	IsClosed() bool
	RemotePeer() peer.ID
}

// NonceCache accepts each grant once: its first use binds it to the
// connection it arrived on, and later channels of the same session may
// present it again — even after it expired, so a long forward can keep
// opening connections — on that connection, or on another connection of
// the same remote peer (the technician) while a connection the grant is
// bound to is still open: a session that started relayed opens its later
// channels on the direct connection a hole punch added, and keeps working
// when the relayed one then ends. Anywhere else it is a replay. Safe for
// concurrent use.
type NonceCache struct {
	mu   sync.Mutex
	seen map[string]nonceEntry
}

type nonceEntry struct {
	expires time.Time
	conns   []Conn // the connections the grant is bound to, first first
}

// live reports whether one of the entry's connections is still open.
func (e nonceEntry) live() bool {
	return slices.ContainsFunc(e.conns, func(c Conn) bool { return !c.IsClosed() })
}

// NewNonceCache returns an empty cache.
func NewNonceCache() *NonceCache { return &NonceCache{seen: map[string]nonceEntry{}} }

// Use decides whether body (already verified with IgnoreExpiry) may open a
// channel on conn at now. It reports whether this was the grant's first use.
func (c *NonceCache) Use(body *pb.JumpGrantBody, conn Conn, now time.Time) (first bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for n, e := range c.seen {
		if !now.Before(e.expires) && !e.live() {
			delete(c.seen, n)
		}
	}
	key := string(body.GetNonce())
	if key == "" {
		return false, mesh.Errorf(mesh.CodeGrantInvalid, "(no nonce)")
	}
	if e, ok := c.seen[key]; ok {
		switch {
		case conn.IsClosed() || !e.live() || e.conns[0].RemotePeer() != conn.RemotePeer():
			return false, mesh.Errorf(mesh.CodeGrantInvalid, "(already used: replayed grant)")
		case !slices.Contains(e.conns, conn):
			e.conns = append(slices.DeleteFunc(e.conns, Conn.IsClosed), conn)
			c.seen[key] = e
		}
		return false, nil
	}
	expires := time.Unix(body.GetExpiresUnix(), 0)
	if !now.Before(expires) {
		return false, mesh.Errorf(mesh.CodeGrantInvalid, "(expired at %s)", expires.UTC().Format(time.RFC3339))
	}
	c.seen[key] = nonceEntry{expires: expires, conns: []Conn{conn}}
	return true, nil
}

// Parse decodes a grant's body without verifying it (the coordinator,
// which just signed it, reads its nonce).
func Parse(g *pb.JumpGrant) (*pb.JumpGrantBody, error) {
	body := new(pb.JumpGrantBody)
	if err := proto.Unmarshal(g.GetBody(), body); err != nil {
		return nil, mesh.Errorf(mesh.CodeGrantInvalid, "(body: %v)", err)
	}
	return body, nil
}
