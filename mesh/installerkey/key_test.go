package installerkey_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/multiformats/go-multihash"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/installerkey"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// signingDomain is repeated here on purpose: changing it in key.go breaks
// every key already handed out, and this test should say so.
const signingDomain = "jumpmesh installer key v1\n"

// t0 is the start of every test key's validity window.
var t0 = time.Date(2026, time.March, 1, 12, 0, 0, 0, time.UTC)

const validFor = 24 * time.Hour

var b64 = base64.RawURLEncoding

// site is a site identity: its key, a Signer over it, and its peer ID.
type site struct {
	key    crypto.PrivKey
	signer *mesh.KeySigner
	id     peer.ID
}

func newSite(tb testing.TB) site {
	tb.Helper()
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return siteFromKey(tb, key)
}

func siteFromKey(tb testing.TB, key crypto.PrivKey) site {
	tb.Helper()
	signer, err := mesh.NewKeySigner(key)
	if err != nil {
		tb.Fatal(err)
	}
	return site{key: key, signer: signer, id: signer.PeerID()}
}

func mustAddrs(tb testing.TB, ss ...string) []ma.Multiaddr {
	tb.Helper()
	addrs, err := mesh.ParseMultiaddrs(ss)
	if err != nil {
		tb.Fatal(err)
	}
	return addrs
}

// testBody is a body with every field set, valid from t0 for validFor.
func testBody(tb testing.TB, siteID, jumpoint peer.ID) *pb.InstallerKeyBody {
	tb.Helper()
	relay := newSite(tb).id
	return &pb.InstallerKeyBody{
		InstallerId: "inst-0001",
		SiteId:      []byte(siteID),
		SiteAddrs: installerkey.EncodeAddrs(mustAddrs(tb,
			"/ip4/198.51.100.7/tcp/4001",
			"/ip4/198.51.100.7/udp/4001/quic-v1",
			"/dns4/coordinator.example.net/tcp/4001",
		)),
		Relays: installerkey.EncodeAddrs(mustAddrs(tb,
			"/ip4/203.0.113.9/tcp/4002/p2p/"+relay.String(),
		)),
		Jumpoints: testJumpoints(tb, jumpoint),
		Defaults: &pb.InstallerDefaults{
			Group:                   "jumpgroup:web",
			Tag:                     "dmz",
			Comments:                "rack 4, row B",
			Name:                    "web-01",
			JumpPolicy:              "office-hours",
			SessionPolicyPresent:    "full",
			SessionPolicyNotPresent: "view-only",
			MaxOfflineMinutes:       90,
			Ephemeral:               true,
			ConnectionType:          pb.ConnectionType_CONNECTION_TYPE_PASSIVE,
		},
		Overridable:   uint32(installerkey.FieldTag | installerkey.FieldName),
		NotBeforeUnix: t0.Unix(),
		NotAfterUnix:  t0.Add(validFor).Unix(),
	}
}

// testJumpoints names jumpoint (none when "") and a second jumpoint, as a
// key for a peer behind two jumpoints does.
func testJumpoints(tb testing.TB, jumpoint peer.ID) []*pb.JumpointRef {
	tb.Helper()
	if jumpoint == "" {
		return nil
	}
	return []*pb.JumpointRef{
		{Id: []byte(jumpoint), Name: "plant-a", Addrs: installerkey.EncodeAddrs(mustAddrs(tb, "/ip4/10.20.0.5/tcp/4833", "/ip4/10.20.0.5/udp/4833/quic-v1"))},
		{Id: []byte(newSite(tb).id), Name: "plant-b", Addrs: installerkey.EncodeAddrs(mustAddrs(tb, "/ip4/10.20.0.6/tcp/4833"))},
	}
}

func sign(tb testing.TB, body *pb.InstallerKeyBody, s site) string {
	tb.Helper()
	key, err := installerkey.Sign(body, s.signer)
	if err != nil {
		tb.Fatal(err)
	}
	return key
}

// signRaw builds a key around raw body bytes, signed by s exactly as Sign
// does but without Sign's checks, so tests can make keys Sign refuses to.
func signRaw(tb testing.TB, raw []byte, s site) string {
	tb.Helper()
	sig, err := s.key.Sign(append([]byte(signingDomain), raw...))
	if err != nil {
		tb.Fatal(err)
	}
	return assemble("jmk1.", raw, sig)
}

func marshal(tb testing.TB, body *pb.InstallerKeyBody) []byte {
	tb.Helper()
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(body)
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

// badLength pads s with base64 digits to a length no unpadded base64 text
// can have (1 mod 4).
func badLength(s string) string {
	for len(s)%4 != 1 {
		s += "A"
	}
	return s
}

func assemble(prefix string, raw, sig []byte) string {
	return prefix + b64.EncodeToString(raw) + "." + b64.EncodeToString(sig)
}

// split decodes a key made by Sign into its body bytes and signature.
func split(tb testing.TB, key string) (raw, sig []byte) {
	tb.Helper()
	parts := strings.Split(key, ".")
	if len(parts) != 3 {
		tb.Fatalf("key has %d parts", len(parts))
	}
	raw, err := b64.DecodeString(parts[1])
	if err != nil {
		tb.Fatal(err)
	}
	sig, err = b64.DecodeString(parts[2])
	if err != nil {
		tb.Fatal(err)
	}
	return raw, sig
}

func wantCode(t *testing.T, err error, want catalog.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", want)
	}
	if got := catalog.CodeOf(err); got != want {
		t.Fatalf("got code %s (%v), want %s", got, err, want)
	}
}

func addrStrings(addrs []ma.Multiaddr) []string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
	}
	return out
}

func TestSignVerifyRoundTrip(t *testing.T) {
	priv, err := mesh.CreateKeyFile(filepath.Join(t.TempDir(), "site.key"))
	if err != nil {
		t.Fatal(err)
	}
	s := siteFromKey(t, priv)
	jumpoint := newSite(t).id
	body := testBody(t, s.id, jumpoint)
	key := sign(t, body, s)

	if !strings.HasPrefix(key, "jmk1.") {
		t.Errorf("key %q does not start with jmk1.", key)
	}
	if body.GetVersion() != 0 {
		t.Errorf("Sign changed the caller's body: version %d", body.GetVersion())
	}

	k, err := installerkey.Verify(key, installerkey.VerifyOptions{Site: s.id, Now: t0.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	want := proto.CloneOf(body)
	want.Version = installerkey.Version
	if !proto.Equal(k.Body, want) {
		t.Errorf("body changed in transit:\n got %v\nwant %v", k.Body, want)
	}
	if k.Site != s.id {
		t.Errorf("Site = %s, want %s", k.Site, s.id)
	}
	if k.Jumpoint != "" {
		t.Errorf("Jumpoint = %s from a key that names jumpoints only in the new field", k.Jumpoint)
	}
	if len(k.Jumpoints) != 2 || k.Jumpoints[0].ID != jumpoint || k.Jumpoints[0].Name != "plant-a" ||
		!slices.Equal(addrStrings(k.Jumpoints[0].Addrs), []string{"/ip4/10.20.0.5/tcp/4833", "/ip4/10.20.0.5/udp/4833/quic-v1"}) ||
		k.Jumpoints[1].Name != "plant-b" || len(k.Jumpoints[1].Addrs) != 1 {
		t.Errorf("Jumpoints = %v, want plant-a (%s, two addresses) then plant-b", k.Jumpoints, jumpoint)
	}
	if back := installerkey.EncodeJumpoints(k.Jumpoints); len(back) != 2 || !proto.Equal(back[0], body.GetJumpoints()[0]) || !proto.Equal(back[1], body.GetJumpoints()[1]) {
		t.Errorf("EncodeJumpoints(Jumpoints) = %v, want the body's %v", back, body.GetJumpoints())
	}
	if k.Raw != key {
		t.Errorf("Raw = %q, want the key", k.Raw)
	}
	wantSiteAddrs := []string{
		"/ip4/198.51.100.7/tcp/4001",
		"/ip4/198.51.100.7/udp/4001/quic-v1",
		"/dns4/coordinator.example.net/tcp/4001",
	}
	if got := addrStrings(k.SiteAddrs); !slices.Equal(got, wantSiteAddrs) {
		t.Errorf("SiteAddrs = %v, want %v", got, wantSiteAddrs)
	}
	if len(k.Relays) != 1 {
		t.Fatalf("Relays = %v, want one", k.Relays)
	}
	relay, err := peer.AddrInfoFromP2pAddr(k.Relays[0])
	if err != nil {
		t.Fatalf("relay address %s: %v", k.Relays[0], err)
	}
	if relay.ID.String() != strings.TrimPrefix(addrStrings(k.Relays)[0], "/ip4/203.0.113.9/tcp/4002/p2p/") {
		t.Errorf("relay peer ID %s does not match its address %s", relay.ID, k.Relays[0])
	}
	if !k.NotBefore().Equal(t0) || !k.NotAfter().Equal(t0.Add(validFor)) {
		t.Errorf("window = [%s, %s), want [%s, %s)", k.NotBefore(), k.NotAfter(), t0, t0.Add(validFor))
	}
	for _, f := range []installerkey.Field{installerkey.FieldTag, installerkey.FieldName} {
		if !k.Overridable(f) {
			t.Errorf("field %v should be overridable", f.Names())
		}
	}
	if k.Overridable(installerkey.FieldGroup) || k.Overridable(installerkey.FieldPublicSiteAddress) {
		t.Errorf("only tag and name should be overridable, got %v", installerkey.Field(k.Body.GetOverridable()).Names())
	}

	// Parse alone gives the same key.
	p, err := installerkey.Parse(key)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(p.Body, k.Body) {
		t.Error("Parse and Verify disagree on the body")
	}
}

func TestSignMinimalBody(t *testing.T) {
	s := newSite(t)
	key := sign(t, &pb.InstallerKeyBody{
		SiteId:        []byte(s.id),
		NotBeforeUnix: t0.Unix(),
		NotAfterUnix:  t0.Add(validFor).Unix(),
	}, s)
	k, err := installerkey.Verify(key, installerkey.VerifyOptions{Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	if k.Jumpoint != "" || k.Jumpoints != nil {
		t.Errorf("Jumpoint = %q, Jumpoints = %v, want none", k.Jumpoint, k.Jumpoints)
	}
	if len(k.SiteAddrs) != 0 || len(k.Relays) != 0 {
		t.Errorf("SiteAddrs = %v, Relays = %v, want none", k.SiteAddrs, k.Relays)
	}
	if k.Body.GetDefaults() != nil {
		t.Errorf("Defaults = %v, want none", k.Body.GetDefaults())
	}
}

func TestSignIsDeterministic(t *testing.T) {
	s := newSite(t)
	body := testBody(t, s.id, "")
	if a, b := sign(t, body, s), sign(t, body, s); a != b {
		t.Errorf("two signatures of one body differ:\n%s\n%s", a, b)
	}
}

func TestSignOverridesVersion(t *testing.T) {
	s := newSite(t)
	body := testBody(t, s.id, "")
	body.Version = 7
	k, err := installerkey.Parse(sign(t, body, s))
	if err != nil {
		t.Fatal(err)
	}
	if k.Body.GetVersion() != installerkey.Version {
		t.Errorf("version = %d, want %d", k.Body.GetVersion(), installerkey.Version)
	}
}

func TestParseTrimsSpace(t *testing.T) {
	s := newSite(t)
	key := sign(t, testBody(t, s.id, ""), s)
	k, err := installerkey.Parse("  \n\t" + key + "\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if k.Raw != key {
		t.Errorf("Raw = %q, want the key without surrounding space", k.Raw)
	}
}

func TestSignRefusesOtherSite(t *testing.T) {
	s, other := newSite(t), newSite(t)
	for name, siteID := range map[string][]byte{
		"other site": []byte(other.id),
		"no site":    nil,
	} {
		t.Run(name, func(t *testing.T) {
			body := testBody(t, s.id, "")
			body.SiteId = siteID
			key, err := installerkey.Sign(body, s.signer)
			if err == nil {
				t.Fatalf("Sign accepted a body for site %q signed by %s: %s", siteID, s.id, key)
			}
			if key != "" {
				t.Errorf("Sign returned a key with its error: %q", key)
			}
		})
	}
}

// failingSigner is a Signer whose key store is unavailable.
type failingSigner struct{ id peer.ID }

var errKeyStoreDown = errors.New("key store unavailable")

func (f failingSigner) PeerID() peer.ID           { return f.id }
func (failingSigner) Sign([]byte) ([]byte, error) { return nil, errKeyStoreDown }

func TestSignSignerError(t *testing.T) {
	s := newSite(t)
	_, err := installerkey.Sign(testBody(t, s.id, ""), failingSigner{id: s.id})
	if !errors.Is(err, errKeyStoreDown) {
		t.Fatalf("got %v, want the signer's error", err)
	}
}

func TestParseBadEncoding(t *testing.T) {
	s := newSite(t)
	body := testBody(t, s.id, newSite(t).id)
	key := sign(t, body, s)
	raw, sig := split(t, key)
	bodyPart := strings.Split(key, ".")[1]
	sigPart := strings.Split(key, ".")[2]

	withBody := func(mutate func(b *pb.InstallerKeyBody)) string {
		b := proto.CloneOf(body)
		b.Version = installerkey.Version
		mutate(b)
		return signRaw(t, marshal(t, b), s)
	}

	cases := map[string]string{
		"empty":                  "",
		"spaces":                 "   \n",
		"garbage":                "this is not an installer key",
		"other scheme":           "ssh-ed25519.AAAA.BBBB",
		"upper case prefix":      "JMK1." + bodyPart + "." + sigPart,
		"prefix only":            "jmk1",
		"prefix and dot":         "jmk1.",
		"missing signature":      "jmk1." + bodyPart,
		"missing body":           "jmk1.." + sigPart,
		"missing signature part": "jmk1." + bodyPart + ".",
		"only dots":              "jmk1..",
		"four parts":             key + ".AAAA",
		"truncated key":          key[:len(key)/2],
		"body not base64":        "jmk1.!!!!." + sigPart,
		"body padded":            "jmk1." + bodyPart + "==." + sigPart,
		"body std alphabet":      "jmk1." + strings.NewReplacer("-", "+", "_", "/").Replace(bodyPart) + "+/." + sigPart,
		"body bad length":        "jmk1." + badLength(bodyPart) + "." + sigPart,
		"signature not base64":   "jmk1." + bodyPart + ".%%%%",
		"signature bad length":   "jmk1." + bodyPart + "." + badLength(sigPart),
		"truncated body":         assemble("jmk1.", raw[:5], sig),
		"body cut in last byte":  assemble("jmk1.", raw[:len(raw)-1], sig),
		"non-protobuf body":      assemble("jmk1.", []byte{0xff, 0xff, 0xff, 0xff, 0xff}, sig),
		"invalid wire type":      assemble("jmk1.", []byte{0x0f, 0x01}, sig),
		"field number zero":      assemble("jmk1.", []byte{0x00, 0x01}, sig),
		"text body":              assemble("jmk1.", []byte("{\"version\": 1}"), sig),
		"too long":               "jmk1." + strings.Repeat("A", installerkey.MaxKeyLength) + "." + sigPart,
		"too long valid":         key + strings.Repeat("A", installerkey.MaxKeyLength),
		"bad site ID": withBody(func(b *pb.InstallerKeyBody) {
			b.SiteId = []byte("not a peer id")
		}),
		"no site ID": withBody(func(b *pb.InstallerKeyBody) {
			b.SiteId = nil
		}),
		"bad site address (signed)": withBody(func(b *pb.InstallerKeyBody) {
			b.SiteAddrs = append(b.SiteAddrs, []byte{0xff, 0xff, 0x03})
		}),
		"bad relay address (signed)": withBody(func(b *pb.InstallerKeyBody) {
			b.Relays = [][]byte{{0x04, 127, 0}}
		}),
		"bad jumpoint ID (signed)": withBody(func(b *pb.InstallerKeyBody) {
			b.Jumpoint = []byte("jumpoint")
		}),
		"bad jumpoint ref ID (signed)": withBody(func(b *pb.InstallerKeyBody) {
			b.Jumpoints[1].Id = []byte("jumpoint")
		}),
		"jumpoint ref without ID (signed)": withBody(func(b *pb.InstallerKeyBody) {
			b.Jumpoints[0].Id = nil
		}),
		"bad jumpoint ref address (signed)": withBody(func(b *pb.InstallerKeyBody) {
			b.Jumpoints[0].Addrs = append(b.Jumpoints[0].Addrs, []byte{0x04, 10, 20})
		}),
		"jumpoint named twice (signed)": withBody(func(b *pb.InstallerKeyBody) {
			b.Jumpoints = append(b.Jumpoints, proto.CloneOf(b.Jumpoints[0]))
		}),
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			k, err := installerkey.Parse(in)
			wantCode(t, err, catalog.CodeKeyBadEncoding)
			if k != nil {
				t.Errorf("Parse returned a key with its error")
			}
			// Verify checks encoding first, whatever the options.
			_, err = installerkey.Verify(in, installerkey.VerifyOptions{Site: newSite(t).id})
			wantCode(t, err, catalog.CodeKeyBadEncoding)
		})
	}
}

func TestParseUnknownVersion(t *testing.T) {
	s := newSite(t)
	key := sign(t, testBody(t, s.id, ""), s)
	rest := strings.TrimPrefix(key, "jmk1.")

	versioned := func(v uint32) string {
		b := testBody(t, s.id, "")
		b.Version = v
		return signRaw(t, marshal(t, b), s)
	}

	cases := map[string]string{
		"prefix jmk2":          "jmk2." + rest,
		"prefix jmk10":         "jmk10." + rest,
		"prefix jmk0":          "jmk0." + rest,
		"prefix without digit": "jmk." + rest,
		"prefix jmk2 only":     "jmk2.",
		"body version 2":       versioned(2),
		"body version 0":       versioned(0),
		"body version max":     versioned(^uint32(0)),
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := installerkey.Parse(in)
			wantCode(t, err, catalog.CodeKeyUnknownVersion)
		})
	}
}

func TestParseBadSignature(t *testing.T) {
	s, other := newSite(t), newSite(t)
	body := testBody(t, s.id, "")
	key := sign(t, body, s)
	raw, sig := split(t, key)

	flip := func(b []byte, i int) []byte {
		out := bytes.Clone(b)
		out[i] ^= 0x01
		return out
	}
	idx := bytes.Index(raw, []byte("inst-0001"))
	if idx < 0 {
		t.Fatal("installer ID not found in the encoded body")
	}
	versioned := proto.CloneOf(body)
	versioned.Version = installerkey.Version
	claimed := marshal(t, versioned)
	if !bytes.Equal(claimed, raw) {
		t.Fatal("test marshalling differs from Sign's; the re-signing cases would not test what they claim")
	}
	otherSig, err := other.key.Sign(append([]byte(signingDomain), raw...))
	if err != nil {
		t.Fatal(err)
	}
	noDomainSig, err := s.key.Sign(raw)
	if err != nil {
		t.Fatal(err)
	}
	otherDomainSig, err := s.key.Sign(append([]byte("jumpmesh jump grant v1\n"), raw...))
	if err != nil {
		t.Fatal(err)
	}
	// A well-formed peer ID that embeds no public key (a SHA-256 one, as
	// RSA keys get), so nothing can verify a signature against it.
	hashed, err := multihash.Sum([]byte("not an ed25519 key"), multihash.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	noKeyBody := proto.CloneOf(versioned)
	noKeyBody.SiteId = []byte(hashed)
	noKeyRaw := marshal(t, noKeyBody)

	cases := map[string]string{
		"signature byte flipped":         assemble("jmk1.", raw, flip(sig, 10)),
		"signature last byte flipped":    assemble("jmk1.", raw, flip(sig, len(sig)-1)),
		"signature truncated":            assemble("jmk1.", raw, sig[:len(sig)-1]),
		"signature extended":             assemble("jmk1.", raw, append(bytes.Clone(sig), 0)),
		"body byte flipped":              assemble("jmk1.", flip(raw, idx+3), sig),
		"body window extended":           assemble("jmk1.", marshal(t, withNotAfter(versioned, t0.Add(365*24*time.Hour))), sig),
		"signed by another key":          assemble("jmk1.", raw, otherSig),
		"signed without domain":          assemble("jmk1.", raw, noDomainSig),
		"signed for another purpose":     assemble("jmk1.", raw, otherDomainSig),
		"site ID without embedded key":   assemble("jmk1.", noKeyRaw, sig),
		"other site's signature grafted": graft(t, sign(t, testBody(t, other.id, ""), other), raw),
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := installerkey.Parse(in)
			wantCode(t, err, catalog.CodeKeyBadSignature)
			_, err = installerkey.Verify(in, installerkey.VerifyOptions{Site: s.id, Now: t0})
			wantCode(t, err, catalog.CodeKeyBadSignature)
		})
	}
}

func withNotAfter(b *pb.InstallerKeyBody, t time.Time) *pb.InstallerKeyBody {
	b = proto.CloneOf(b)
	b.NotAfterUnix = t.Unix()
	return b
}

// graft puts raw under the signature of key.
func graft(tb testing.TB, key string, raw []byte) string {
	_, sig := split(tb, key)
	return assemble("jmk1.", raw, sig)
}

func TestVerifyOtherSite(t *testing.T) {
	s, other := newSite(t), newSite(t)
	key := sign(t, testBody(t, s.id, ""), s)
	now := t0.Add(time.Hour)

	_, err := installerkey.Verify(key, installerkey.VerifyOptions{Site: other.id, Now: now})
	wantCode(t, err, catalog.CodeKeyOtherSite)
	if !strings.Contains(err.Error(), other.id.String()) || !strings.Contains(err.Error(), s.id.String()) {
		t.Errorf("error %q should name both sites", err)
	}

	// The site is checked before the window.
	_, err = installerkey.Verify(key, installerkey.VerifyOptions{Site: other.id, Now: t0.Add(2 * validFor)})
	wantCode(t, err, catalog.CodeKeyOtherSite)

	// No site in the options accepts the key's own.
	if _, err := installerkey.Verify(key, installerkey.VerifyOptions{Now: now}); err != nil {
		t.Errorf("Verify without a site: %v", err)
	}
	if _, err := installerkey.Verify(key, installerkey.VerifyOptions{Site: s.id, Now: now}); err != nil {
		t.Errorf("Verify with the key's site: %v", err)
	}
}

func TestVerifyWindow(t *testing.T) {
	s := newSite(t)
	key := sign(t, testBody(t, s.id, ""), s)
	notBefore, notAfter := t0, t0.Add(validFor)

	cases := []struct {
		name string
		now  time.Time
		want catalog.Code
	}{
		{"zero time", time.Time{}, catalog.CodeKeyNotYetValid},
		{"a day early", notBefore.Add(-24 * time.Hour), catalog.CodeKeyNotYetValid},
		{"a second early", notBefore.Add(-time.Second), catalog.CodeKeyNotYetValid},
		{"a nanosecond early", notBefore.Add(-time.Nanosecond), catalog.CodeKeyNotYetValid},
		{"at not-before", notBefore, ""},
		{"at not-before, other zone", notBefore.In(time.FixedZone("UTC+5", 5*3600)), ""},
		{"inside", notBefore.Add(validFor / 2), ""},
		{"a nanosecond before not-after", notAfter.Add(-time.Nanosecond), ""},
		{"at not-after", notAfter, catalog.CodeKeyExpired},
		{"a nanosecond after not-after", notAfter.Add(time.Nanosecond), catalog.CodeKeyExpired},
		{"a year later", notAfter.Add(365 * 24 * time.Hour), catalog.CodeKeyExpired},
	}
	k, err := installerkey.Parse(key)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := installerkey.VerifyOptions{Site: s.id, Now: tc.now}
			_, err := installerkey.Verify(key, opts)
			checkErr := k.Check(opts)
			if tc.want == "" {
				if err != nil {
					t.Errorf("Verify: %v", err)
				}
				if checkErr != nil {
					t.Errorf("Check: %v", checkErr)
				}
				return
			}
			wantCode(t, err, tc.want)
			wantCode(t, checkErr, tc.want)
		})
	}
}

func TestVerifyReversedWindow(t *testing.T) {
	// A window that ends before it starts is valid at no time.
	s := newSite(t)
	b := testBody(t, s.id, "")
	b.NotBeforeUnix, b.NotAfterUnix = b.NotAfterUnix, b.NotBeforeUnix
	key := sign(t, b, s)
	for _, now := range []time.Time{t0.Add(-time.Hour), t0, t0.Add(validFor / 2), t0.Add(validFor), t0.Add(2 * validFor)} {
		if _, err := installerkey.Verify(key, installerkey.VerifyOptions{Now: now}); err == nil {
			t.Errorf("reversed window accepted at %s", now)
		}
	}
}

func TestParseFields(t *testing.T) {
	cases := []struct {
		in   []string
		want installerkey.Field
	}{
		{nil, 0},
		{[]string{}, 0},
		{[]string{""}, 0},
		{[]string{" , ,"}, 0},
		{[]string{"all"}, installerkey.AllFields},
		{[]string{"tag"}, installerkey.FieldTag},
		{[]string{"tag,name"}, installerkey.FieldTag | installerkey.FieldName},
		{[]string{"tag, name ,comments"}, installerkey.FieldTag | installerkey.FieldName | installerkey.FieldComments},
		{[]string{"tag", "jump-group"}, installerkey.FieldTag | installerkey.FieldGroup},
		{[]string{"tag", "tag,tag"}, installerkey.FieldTag},
		{[]string{"jc-tag"}, installerkey.FieldTag},
		{[]string{" jc-jump-policy ", "jc-max-offline-minutes"}, installerkey.FieldJumpPolicy | installerkey.FieldMaxOfflineMinutes},
		{[]string{"jc-session-policy-present,jc-session-policy-not-present"}, installerkey.FieldSessionPolicyPresent | installerkey.FieldSessionPolicyNotPresent},
		{[]string{"public-site-address"}, installerkey.FieldPublicSiteAddress},
		{[]string{"all", "tag"}, installerkey.AllFields},
		{[]string{"jc-all"}, installerkey.AllFields},
		{[]string{"name,", ",all"}, installerkey.AllFields},
	}
	for _, tc := range cases {
		got, err := installerkey.ParseFields(tc.in)
		if err != nil {
			t.Errorf("ParseFields(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseFields(%q) = %v, want %v", tc.in, got.Names(), tc.want.Names())
		}
	}
}

func TestParseFieldsUnknown(t *testing.T) {
	for _, in := range [][]string{
		{"bogus"},
		{"tag,bogus"},
		{"tag", "bogus"},
		{"all,bogus"},
		{"Tag"},
		{"jc-jc-tag"},
		{"--jc-tag"},
		{"group"},
	} {
		got, err := installerkey.ParseFields(in)
		if err == nil {
			t.Errorf("ParseFields(%q) = %v, want an error", in, got.Names())
			continue
		}
		if got != 0 {
			t.Errorf("ParseFields(%q) returned fields %v with its error", in, got.Names())
		}
		if code := catalog.CodeOf(err); code != catalog.CodeInvalidArgument {
			t.Errorf("ParseFields(%q): code %s, want %s", in, code, catalog.CodeInvalidArgument)
		}
		// The error lists what would have been accepted.
		for _, n := range append(installerkey.FieldNames(), "all") {
			if !strings.Contains(err.Error(), n) {
				t.Errorf("ParseFields(%q): error %q does not mention %q", in, err, n)
			}
		}
	}
}

func TestFieldNames(t *testing.T) {
	names := installerkey.FieldNames()
	if !slices.IsSorted(names) {
		t.Errorf("FieldNames not sorted: %v", names)
	}
	if got := installerkey.AllFields.Names(); !slices.Equal(got, names) {
		t.Errorf("AllFields.Names() = %v, want %v", got, names)
	}
	if got := installerkey.Field(0).Names(); len(got) != 0 {
		t.Errorf("Field(0).Names() = %v, want none", got)
	}
	all, err := installerkey.ParseFields(names)
	if err != nil {
		t.Fatal(err)
	}
	if all != installerkey.AllFields {
		t.Errorf("ParseFields(FieldNames()) = %b, want AllFields %b", all, installerkey.AllFields)
	}

	var seen installerkey.Field
	for _, n := range names {
		f, err := installerkey.ParseFields([]string{n})
		if err != nil {
			t.Fatal(err)
		}
		if f == 0 || f&(f-1) != 0 {
			t.Errorf("field %q = %b, want exactly one bit", n, f)
		}
		if seen&f != 0 {
			t.Errorf("field %q shares its bit with another name", n)
		}
		seen |= f
		if got := f.Names(); !slices.Equal(got, []string{n}) {
			t.Errorf("ParseFields(%q).Names() = %v", n, got)
		}
		// Each name is also the --jc- install flag that overrides it.
		if g, err := installerkey.ParseFields([]string{"jc-" + n}); err != nil || g != f {
			t.Errorf("ParseFields(jc-%s) = %b, %v; want %b", n, g, err, f)
		}
	}

	// Bits outside AllFields have no name.
	if got := (installerkey.AllFields + 1<<20).Names(); !slices.Equal(got, names) {
		t.Errorf("unknown bits changed Names: %v", got)
	}
}
