package grant

import (
	"crypto/rand"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
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
}

// Verify checks g against c and returns its body. Each failure is a
// catalog error with code grant_invalid, naming what failed. A peer admits
// channels with Gate.Admit instead, which also decides replays, the
// open-channel bound and revocations.
func Verify(g *pb.JumpGrant, c Check) (*pb.JumpGrantBody, error) {
	return verify(g, c, true)
}

func verify(g *pb.JumpGrant, c Check, expiry bool) (*pb.JumpGrantBody, error) {
	if g == nil || len(g.GetBody()) == 0 {
		return nil, catalog.Errorf(catalog.CodeGrantInvalid, "(no grant)")
	}
	if err := mesh.VerifySignature(c.Site, append([]byte(signingDomain), g.GetBody()...), g.GetSignature()); err != nil {
		return nil, catalog.Errorf(catalog.CodeGrantInvalid, "(signature: %v)", err)
	}
	body := new(pb.JumpGrantBody)
	if err := proto.Unmarshal(g.GetBody(), body); err != nil {
		return nil, catalog.Errorf(catalog.CodeGrantInvalid, "(body: %v)", err)
	}
	switch {
	case body.GetVersion() != Version:
		return nil, catalog.Errorf(catalog.CodeGrantInvalid, "(version %d)", body.GetVersion())
	case peer.ID(body.GetSiteId()) != c.Site:
		return nil, catalog.Errorf(catalog.CodeGrantInvalid, "(another site)")
	case len(body.GetJumpoint()) > 0 || body.GetTarget() != "":
		// Never a peer grant, whatever its peer field says: the coordinator
		// checked it against a jumpoint's allow list, not a peer's policies.
		return nil, catalog.Errorf(catalog.CodeGrantInvalid, "(the grant is for an agentless target through a jumpoint, not for a peer)")
	case peer.ID(body.GetPeer()) != c.Peer:
		return nil, catalog.Errorf(catalog.CodeGrantInvalid, "(the grant is for another peer)")
	case peer.ID(body.GetTechnician()) != c.Technician:
		return nil, catalog.Errorf(catalog.CodeGrantInvalid, "(the grant is for another technician)")
	case time.Unix(body.GetExpiresUnix(), 0).Sub(time.Unix(body.GetIssuedUnix(), 0)) > MaxLifetime:
		return nil, catalog.Errorf(catalog.CodeGrantInvalid, "(lifetime over %s)", MaxLifetime)
	case expiry && !c.Now.Before(time.Unix(body.GetExpiresUnix(), 0)):
		return nil, catalog.Errorf(catalog.CodeGrantInvalid, "(expired at %s)", time.Unix(body.GetExpiresUnix(), 0).UTC().Format(time.RFC3339))
	case c.Capability != 0 && body.GetCapabilities()&c.Capability == 0:
		return nil, catalog.Errorf(catalog.CodePermissionDenied, "(the session policy does not allow %s)", CapabilityName(c.Capability))
	}
	return body, nil
}

// Parse decodes a grant's body without verifying it (the coordinator,
// which just signed it, reads its nonce).
func Parse(g *pb.JumpGrant) (*pb.JumpGrantBody, error) {
	body := new(pb.JumpGrantBody)
	if err := proto.Unmarshal(g.GetBody(), body); err != nil {
		return nil, catalog.Errorf(catalog.CodeGrantInvalid, "(body: %v)", err)
	}
	return body, nil
}

// TargetCheck says what VerifyTarget checks an agentless grant against.
type TargetCheck struct {
	Site       peer.ID // the site
	Jumpoint   peer.ID // the verifying jumpoint itself
	Technician peer.ID // the authenticated remote
	Now        time.Time
}

// VerifyTarget checks a grant for an agentless target (jumpmesh forward
// --via) at a jumpoint: the site's signature, made out to the remote
// technician, valid now, naming this jumpoint and a target, and no peer —
// so a peer grant never passes as one, nor one of these as a peer grant
// (Verify refuses grants that name a jumpoint or target). Whether the
// target is the one asked for and in the allow list is the jumpoint's to
// check. Failures are grant_invalid.
func VerifyTarget(g *pb.JumpGrant, c TargetCheck) (*pb.JumpGrantBody, error) {
	if g == nil || len(g.GetBody()) == 0 {
		return nil, catalog.Errorf(catalog.CodeGrantInvalid, "(no grant)")
	}
	if err := mesh.VerifySignature(c.Site, append([]byte(signingDomain), g.GetBody()...), g.GetSignature()); err != nil {
		return nil, catalog.Errorf(catalog.CodeGrantInvalid, "(signature: %v)", err)
	}
	body := new(pb.JumpGrantBody)
	if err := proto.Unmarshal(g.GetBody(), body); err != nil {
		return nil, catalog.Errorf(catalog.CodeGrantInvalid, "(body: %v)", err)
	}
	switch {
	case body.GetVersion() != Version:
		return nil, catalog.Errorf(catalog.CodeGrantInvalid, "(version %d)", body.GetVersion())
	case peer.ID(body.GetSiteId()) != c.Site:
		return nil, catalog.Errorf(catalog.CodeGrantInvalid, "(another site)")
	case len(body.GetPeer()) > 0 || body.GetTarget() == "" || len(body.GetJumpoint()) == 0:
		return nil, catalog.Errorf(catalog.CodeGrantInvalid, "(the grant is for a peer, not for an agentless target through a jumpoint)")
	case peer.ID(body.GetJumpoint()) != c.Jumpoint:
		return nil, catalog.Errorf(catalog.CodeGrantInvalid, "(the grant is for another jumpoint)")
	case peer.ID(body.GetTechnician()) != c.Technician:
		return nil, catalog.Errorf(catalog.CodeGrantInvalid, "(the grant is for another technician)")
	case time.Unix(body.GetExpiresUnix(), 0).Sub(time.Unix(body.GetIssuedUnix(), 0)) > MaxLifetime:
		return nil, catalog.Errorf(catalog.CodeGrantInvalid, "(lifetime over %s)", MaxLifetime)
	case !c.Now.Before(time.Unix(body.GetExpiresUnix(), 0)):
		return nil, catalog.Errorf(catalog.CodeGrantInvalid, "(expired at %s)", time.Unix(body.GetExpiresUnix(), 0).UTC().Format(time.RFC3339))
	}
	return body, nil
}
