package installerkey

import (
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Version is the key format this package writes.
const Version = 1

const (
	prefix        = "jmk1."
	signingDomain = "jumpmesh installer key v1\n"
	// MaxKeyLength bounds what Parse accepts, so a pasted file cannot make it
	// allocate without limit. Real keys are well under 2 KiB.
	MaxKeyLength = 16 << 10
)

// Validity bounds of an installer key (seeds: 10 minutes to 1 year).
const (
	MinValidity = 10 * time.Minute
	MaxValidity = 365 * 24 * time.Hour
)

// Key is a parsed, signature-checked installer key.
type Key struct {
	Body *pb.InstallerKeyBody
	// Site is the site's peer ID, the key's signer.
	Site peer.ID
	// SiteAddrs, Relays are the decoded multiaddrs of the body.
	SiteAddrs []ma.Multiaddr
	Relays    []ma.Multiaddr
	// Jumpoint is the peer ID in the body's old single field, or "". Keys
	// made since jumpoints have names leave it empty and fill Jumpoints.
	Jumpoint peer.ID
	// Jumpoints are the jumpoints a peer installed with this key talks to
	// the site through, in the order to try them; none for a peer that
	// reaches the site itself.
	Jumpoints []JumpointRef
	// Raw is the encoded key as parsed.
	Raw string
}

// JumpointRef is one jumpoint a key names: its peer ID, its name at the
// site, and where the networks it serves reach it (no /p2p/ component).
type JumpointRef struct {
	ID    peer.ID
	Name  string
	Addrs []ma.Multiaddr
	// PeerPort is the jumpoint's peer-link port on the IP addresses of
	// Addrs (mesh/tunnel link.go); 0: it has none.
	PeerPort uint32
}

// NotBefore and NotAfter are the validity window.
func (k *Key) NotBefore() time.Time { return time.Unix(k.Body.GetNotBeforeUnix(), 0) }
func (k *Key) NotAfter() time.Time  { return time.Unix(k.Body.GetNotAfterUnix(), 0) }

// Overridable reports whether the host may override field f at install.
func (k *Key) Overridable(f Field) bool { return k.Body.GetOverridable()&uint32(f) != 0 }

// Sign encodes body and signs it with signer, whose peer ID must be the
// body's site. The body's version is set to Version.
func Sign(body *pb.InstallerKeyBody, signer mesh.Signer) (string, error) {
	if peer.ID(body.GetSiteId()) != signer.PeerID() {
		return "", fmt.Errorf("installer key names site %s but the signer is %s", peer.ID(body.GetSiteId()), signer.PeerID())
	}
	body = proto.CloneOf(body)
	body.Version = Version
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(body)
	if err != nil {
		return "", fmt.Errorf("encoding installer key: %w", err)
	}
	sig, err := signer.Sign(signedBytes(raw))
	if err != nil {
		return "", fmt.Errorf("signing installer key: %w", err)
	}
	enc := base64.RawURLEncoding
	return prefix + enc.EncodeToString(raw) + "." + enc.EncodeToString(sig), nil
}

func signedBytes(body []byte) []byte {
	msg := make([]byte, 0, len(signingDomain)+len(body))
	return append(append(msg, signingDomain...), body...)
}

// Parse decodes s and checks its version and signature. It does not check
// the site or the validity window; see Verify.
func Parse(s string) (*Key, error) {
	s = strings.TrimSpace(s)
	if len(s) > MaxKeyLength {
		return nil, catalog.Errorf(catalog.CodeKeyBadEncoding, "(%d characters, at most %d)", len(s), MaxKeyLength)
	}
	ver, rest, ok := strings.Cut(s, ".")
	if !ok || !strings.HasPrefix(ver, "jmk") {
		return nil, catalog.Errorf(catalog.CodeKeyBadEncoding, "(it must start with \"jmk1.\")")
	}
	if ver+"." != prefix {
		return nil, catalog.Errorf(catalog.CodeKeyUnknownVersion, "(format %q; this jumpmesh reads %q)", ver, strings.TrimSuffix(prefix, "."))
	}
	bodyPart, sigPart, ok := strings.Cut(rest, ".")
	// An empty part is a part missing (a key cut while copying), not an
	// empty body of version 0 or an empty signature.
	if !ok || bodyPart == "" || sigPart == "" || strings.Contains(sigPart, ".") {
		return nil, catalog.Errorf(catalog.CodeKeyBadEncoding, "(expected three dot-separated parts)")
	}
	// Strict: one key has exactly one spelling (no slack in trailing bits or line breaks).
	enc := base64.RawURLEncoding.Strict()
	raw, err := enc.DecodeString(bodyPart)
	if err != nil {
		return nil, catalog.Errorf(catalog.CodeKeyBadEncoding, "(body: %v)", err)
	}
	sig, err := enc.DecodeString(sigPart)
	if err != nil {
		return nil, catalog.Errorf(catalog.CodeKeyBadEncoding, "(signature: %v)", err)
	}
	body := new(pb.InstallerKeyBody)
	if err := proto.Unmarshal(raw, body); err != nil {
		return nil, catalog.Errorf(catalog.CodeKeyBadEncoding, "(body: %v)", err)
	}
	if body.GetVersion() != Version {
		return nil, catalog.Errorf(catalog.CodeKeyUnknownVersion, "(body version %d; this jumpmesh reads %d)", body.GetVersion(), Version)
	}
	site, err := peer.IDFromBytes(body.GetSiteId())
	if err != nil {
		return nil, catalog.Errorf(catalog.CodeKeyBadEncoding, "(site ID: %v)", err)
	}
	if err := mesh.VerifySignature(site, signedBytes(raw), sig); err != nil {
		return nil, catalog.Errorf(catalog.CodeKeyBadSignature, "(%v)", err)
	}
	k := &Key{Body: body, Site: site, Raw: s}
	if k.SiteAddrs, err = decodeAddrs(body.GetSiteAddrs()); err != nil {
		return nil, catalog.Errorf(catalog.CodeKeyBadEncoding, "(site address: %v)", err)
	}
	if k.Relays, err = decodeAddrs(body.GetRelays()); err != nil {
		return nil, catalog.Errorf(catalog.CodeKeyBadEncoding, "(relay address: %v)", err)
	}
	if len(body.GetJumpoint()) > 0 {
		if k.Jumpoint, err = peer.IDFromBytes(body.GetJumpoint()); err != nil {
			return nil, catalog.Errorf(catalog.CodeKeyBadEncoding, "(jumpoint ID: %v)", err)
		}
	}
	if k.Jumpoints, err = decodeJumpoints(body.GetJumpoints()); err != nil {
		return nil, err
	}
	return k, nil
}

// decodeJumpoints checks and decodes the body's jumpoint references: each
// needs a valid peer ID and valid addresses, and none may repeat.
func decodeJumpoints(refs []*pb.JumpointRef) ([]JumpointRef, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	out := make([]JumpointRef, 0, len(refs))
	for i, r := range refs {
		id, err := peer.IDFromBytes(r.GetId())
		if err != nil {
			return nil, catalog.Errorf(catalog.CodeKeyBadEncoding, "(jumpoint %d ID: %v)", i+1, err)
		}
		for _, o := range out {
			if o.ID == id {
				return nil, catalog.Errorf(catalog.CodeKeyBadEncoding, "(jumpoint %s named twice)", id)
			}
		}
		addrs, err := decodeAddrs(r.GetAddrs())
		if err != nil {
			return nil, catalog.Errorf(catalog.CodeKeyBadEncoding, "(jumpoint %s address: %v)", id, err)
		}
		if r.GetPeerPort() > 65535 {
			return nil, catalog.Errorf(catalog.CodeKeyBadEncoding, "(jumpoint %s peer-link port %d)", id, r.GetPeerPort())
		}
		out = append(out, JumpointRef{ID: id, Name: r.GetName(), Addrs: addrs, PeerPort: r.GetPeerPort()})
	}
	return out, nil
}

// EncodeJumpoints is the inverse of the decoding Parse does, for building
// bodies.
func EncodeJumpoints(refs []JumpointRef) []*pb.JumpointRef {
	out := make([]*pb.JumpointRef, 0, len(refs))
	for _, r := range refs {
		out = append(out, &pb.JumpointRef{Id: []byte(r.ID), Name: r.Name, Addrs: mesh.EncodeAddrs(r.Addrs), PeerPort: r.PeerPort})
	}
	return out
}

func decodeAddrs(raw [][]byte) ([]ma.Multiaddr, error) {
	out := make([]ma.Multiaddr, 0, len(raw))
	for _, b := range raw {
		a, err := ma.NewMultiaddrBytes(b)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// EncodeAddrs is the inverse of the decoding Parse does, for building bodies.
func EncodeAddrs(addrs []ma.Multiaddr) [][]byte { return mesh.EncodeAddrs(addrs) }

// VerifyOptions say what Verify checks beyond the signature.
type VerifyOptions struct {
	// Site, when set, is the only site the key may belong to.
	Site peer.ID
	// Now is the time the window is checked at. Required.
	Now time.Time
}

// Verify parses s and checks its signature, site and validity window.
func Verify(s string, opts VerifyOptions) (*Key, error) {
	k, err := Parse(s)
	if err != nil {
		return nil, err
	}
	if err := k.Check(opts); err != nil {
		return nil, err
	}
	return k, nil
}

// Check checks an already parsed key's site and window.
func (k *Key) Check(opts VerifyOptions) error {
	if opts.Site != "" && k.Site != opts.Site {
		return catalog.Errorf(catalog.CodeKeyOtherSite, "(key site %s, expected %s)", k.Site, opts.Site)
	}
	if opts.Now.Before(k.NotBefore()) {
		return catalog.Errorf(catalog.CodeKeyNotYetValid, "(valid from %s)", k.NotBefore().UTC().Format(time.RFC3339))
	}
	if !opts.Now.Before(k.NotAfter()) {
		return catalog.Errorf(catalog.CodeKeyExpired, "(expired at %s)", k.NotAfter().UTC().Format(time.RFC3339))
	}
	return nil
}
