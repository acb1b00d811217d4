// Package localpolicy signs and verifies a site's statement of what the
// users of one peer's host may do locally (today: whether local disable,
// enable and uninstall are root's only).
//
// The coordinator signs a statement for each peer in every welcome and
// update; the peer keeps it in its user-writable state. Local commands
// verify it against the site key pinned in the root-owned config, so the
// peer's user cannot turn a restriction off by editing the state: a
// changed statement fails the signature, another peer's names another peer
// ID. What the user can do is put back an older statement of this peer
// (see peer/doc.go for how far that goes). The signature covers
// "jumpmesh local policy v1\n" + body, so no other signed object of the
// site (an installer key, a grant) can pass as a statement.
//
// Pure: no network, no files.
package localpolicy

import (
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

const signingDomain = "jumpmesh local policy v1\n"

// ErrInvalid is wrapped by every verification failure.
var ErrInvalid = errors.New("invalid local policy statement")

// Sign states restrict for peerID at now, signed by the site.
func Sign(signer mesh.Signer, peerID peer.ID, restrict bool, now time.Time) (*pb.LocalPolicy, error) {
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(&pb.LocalPolicyBody{SiteId: []byte(signer.PeerID()),
		PeerId: []byte(peerID), RestrictLocalUninstall: restrict, IssuedAtUnixMillis: now.UnixMilli()})
	if err != nil {
		return nil, err
	}
	sig, err := signer.Sign(append([]byte(signingDomain), body...))
	if err != nil {
		return nil, fmt.Errorf("signing the local policy: %w", err)
	}
	return &pb.LocalPolicy{Body: body, Signature: sig}, nil
}

// Verify checks that lp was signed by site for peerID and returns its body.
func Verify(lp *pb.LocalPolicy, site, peerID peer.ID) (*pb.LocalPolicyBody, error) {
	if len(lp.GetBody()) == 0 {
		return nil, fmt.Errorf("%w: none", ErrInvalid)
	}
	if err := mesh.VerifySignature(site, append([]byte(signingDomain), lp.GetBody()...), lp.GetSignature()); err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrInvalid, err)
	}
	body := new(pb.LocalPolicyBody)
	if err := proto.Unmarshal(lp.GetBody(), body); err != nil {
		return nil, fmt.Errorf("%w: body: %v", ErrInvalid, err)
	}
	switch {
	case peer.ID(body.GetSiteId()) != site:
		return nil, fmt.Errorf("%w: another site", ErrInvalid)
	case peer.ID(body.GetPeerId()) != peerID:
		return nil, fmt.Errorf("%w: for another peer", ErrInvalid)
	}
	return body, nil
}

// IssuedAt is when the statement was signed.
func IssuedAt(b *pb.LocalPolicyBody) time.Time { return time.UnixMilli(b.GetIssuedAtUnixMillis()) }
