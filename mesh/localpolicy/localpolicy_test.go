package localpolicy_test

import (
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/localpolicy"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

func signer(t testing.TB) *mesh.KeySigner {
	t.Helper()
	priv, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := mesh.NewKeySigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSignAndVerify(t *testing.T) {
	site, other, p, q := signer(t), signer(t), signer(t).PeerID(), signer(t).PeerID()
	now := time.Unix(1_700_000_000, 123e6)
	lp, err := localpolicy.Sign(site, p, true, now)
	if err != nil {
		t.Fatal(err)
	}
	body, err := localpolicy.Verify(lp, site.PeerID(), p)
	if err != nil || !body.GetRestrictLocalUninstall() || !localpolicy.IssuedAt(body).Equal(now) {
		t.Fatalf("verify: %v %v", body, err)
	}

	flipped := proto.Clone(lp).(*pb.LocalPolicy)
	var b pb.LocalPolicyBody
	_ = proto.Unmarshal(flipped.Body, &b)
	b.RestrictLocalUninstall = false
	flipped.Body, _ = proto.Marshal(&b)
	byOther, _ := localpolicy.Sign(other, p, false, now)
	forQ, _ := localpolicy.Sign(site, q, false, now)
	for name, c := range map[string]struct {
		lp   *pb.LocalPolicy
		site peer.ID
	}{
		"none":                 {nil, site.PeerID()},
		"restriction dropped":  {flipped, site.PeerID()},
		"signed by another":    {byOther, site.PeerID()},
		"another peer's":       {forQ, site.PeerID()},
		"checked for another":  {lp, other.PeerID()},
		"signature truncated":  {&pb.LocalPolicy{Body: lp.Body, Signature: lp.Signature[:10]}, site.PeerID()},
		"garbage body, signed": {signedGarbage(t, site), site.PeerID()},
	} {
		if _, err := localpolicy.Verify(c.lp, c.site, p); !errors.Is(err, localpolicy.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

// signedGarbage is a validly signed body that is not a LocalPolicyBody of
// this site: what another signed object of the site would look like.
func signedGarbage(t *testing.T, s *mesh.KeySigner) *pb.LocalPolicy {
	body := []byte{0xff, 0xff, 0xff}
	sig, err := s.Sign(append([]byte("jumpmesh local policy v1\n"), body...))
	if err != nil {
		t.Fatal(err)
	}
	return &pb.LocalPolicy{Body: body, Signature: sig}
}

func FuzzVerify(f *testing.F) {
	site, p := signer(f), signer(f).PeerID()
	lp, _ := localpolicy.Sign(site, p, true, time.Unix(1, 0))
	f.Add(lp.Body, lp.Signature)
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, body, sig []byte) {
		got, err := localpolicy.Verify(&pb.LocalPolicy{Body: body, Signature: sig}, site.PeerID(), p)
		if err == nil && (peer.ID(got.GetPeerId()) != p || peer.ID(got.GetSiteId()) != site.PeerID()) {
			t.Fatalf("accepted a statement for %x", got.GetPeerId())
		}
	})
}
