// Package installerkey encodes, signs and verifies installer keys.
//
// An installer key is what an administrator hands to a host so that it can
// enroll as a peer of a site (the seeds' KEY_INFO). It is self-describing
// and verifiable offline: everything the host needs — the site's peer ID and
// addresses, relays, the jumpoints to talk through (if any), the defaults of the new peer, the
// fields the host may override, and the validity window — travels inside it,
// signed by the site key.
//
// Format (version 1):
//
//	jmk1.<base64url(InstallerKeyBody)>.<base64url(signature)>
//
// The body is the protobuf pb.InstallerKeyBody; the signature is Ed25519 by
// the site key over "jumpmesh installer key v1\n" followed by the body bytes
// (the prefix keeps a signature for one purpose from being replayed as
// another, e.g. as a jump grant). The site's public key is embedded in its
// peer ID, so no other material is needed to verify.
//
// Verification order, each failure with its own catalog code: encoding
// (key_bad_encoding), version (key_unknown_version), signature
// (key_bad_signature), site (key_other_site), window (key_not_yet_valid,
// key_expired). Revocation (key_revoked) can only be known by the
// coordinator, which checks its installer record after Verify.
//
// This package must not talk to the network or read files: it is pure so a
// host can run it before anything is installed.
package installerkey
