package coordinator

import (
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/installerkey"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// A key that verified is parsed once, however many peers bring it; keys
// that do not verify are never kept; the cache stays within its bound.
func TestVerifiedKeysRememberOnlyVerifiedKeys(t *testing.T) {
	priv, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := mesh.NewKeySigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	c := &keyCache{keys: make(map[string]*installerkey.Key)}
	sign := func(id string) string {
		t.Helper()
		k, err := installerkey.Sign(&pb.InstallerKeyBody{InstallerId: id, SiteId: []byte(signer.PeerID()),
			NotAfterUnix: time.Now().Add(time.Hour).Unix()}, signer)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	key := sign("in-1")
	first, err := c.parse(key)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := c.parse(key); err != nil || again != first {
		t.Fatalf("the second parse of a verified key was not the remembered one (%v)", err)
	}
	bad := key[:len(key)-2] + map[bool]string{true: "B", false: "A"}[key[len(key)-2] == 'A'] + key[len(key)-1:]
	if _, err := c.parse(bad); err == nil {
		t.Fatal("a key with a changed signature parsed")
	}
	if c.lookup(bad) != nil || len(c.keys) != 1 {
		t.Fatalf("a key that did not verify was kept (%d keys)", len(c.keys))
	}
	for i := range verifiedKeysMax + 10 {
		if _, err := c.parse(sign(fmt.Sprint("in-x", i))); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.keys) > verifiedKeysMax {
		t.Fatalf("%d keys kept, at most %d", len(c.keys), verifiedKeysMax)
	}
}
