package installerkey_test

import (
	"slices"
	"strings"
	"testing"

	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/installerkey"
)

// FuzzParse feeds Parse what a user might paste. Parse must never panic,
// must fail only with an installer-key code, and whatever it accepts must be
// accepted again, with the same meaning, from the key's own Raw text.
//
// The seeds in testdata/fuzz/FuzzParse include valid keys signed by a fixed
// site, so the fuzzer starts next to the interesting paths (signature and
// address decoding) rather than at the prefix check.
func FuzzParse(f *testing.F) {
	s := newSite(f)
	key := sign(f, testBody(f, s.id, newSite(f).id), s)
	raw, sig := split(f, key)
	f.Add(key)
	f.Add(" " + key + "\n")
	f.Add(key[:len(key)-1])
	f.Add(key[:len(key)/2])
	f.Add(key + ".")
	f.Add(strings.Replace(key, "jmk1.", "jmk2.", 1))
	f.Add(assemble("jmk1.", raw[:len(raw)/2], sig))
	f.Add(assemble("jmk1.", raw, sig[1:]))
	f.Add(signRaw(f, marshal(f, testBody(f, s.id, "")), s)) // version 0
	badAddr := testBody(f, s.id, "")
	badAddr.Version = installerkey.Version
	badAddr.Relays = append(badAddr.Relays, []byte{0x04, 127, 0, 0})
	f.Add(signRaw(f, marshal(f, badAddr), s))
	badRef := testBody(f, s.id, newSite(f).id)
	badRef.Version = installerkey.Version
	badRef.Jumpoints[1].Addrs = [][]byte{{0x06, 0x12}}
	f.Add(signRaw(f, marshal(f, badRef), s))
	f.Add("")
	f.Add("jmk1..")

	f.Fuzz(func(t *testing.T, in string) {
		k, err := installerkey.Parse(in)
		if err != nil {
			if k != nil {
				t.Fatalf("Parse returned a key with error %v", err)
			}
			switch code := catalog.CodeOf(err); code {
			case catalog.CodeKeyBadEncoding, catalog.CodeKeyUnknownVersion, catalog.CodeKeyBadSignature:
			default:
				t.Fatalf("Parse failed with code %s: %v", code, err)
			}
			return
		}
		if k.Body == nil || k.Site == "" {
			t.Fatalf("Parse accepted %q but left the key incomplete: %+v", in, k)
		}
		if k.Body.GetVersion() != installerkey.Version {
			t.Fatalf("Parse accepted body version %d", k.Body.GetVersion())
		}
		for _, again := range []string{in, k.Raw} {
			k2, err := installerkey.Parse(again)
			if err != nil {
				t.Fatalf("Parse accepted %q but not %q: %v", in, again, err)
			}
			if !proto.Equal(k.Body, k2.Body) || k.Site != k2.Site || k.Jumpoint != k2.Jumpoint || k.Raw != k2.Raw ||
				!sameJumpoints(k.Jumpoints, k2.Jumpoints) {
				t.Fatalf("parsing %q twice gave different keys", again)
			}
		}
		// Verify adds only the site and window checks to Parse.
		opts := installerkey.VerifyOptions{Site: k.Site, Now: k.NotBefore()}
		_, err = installerkey.Verify(in, opts)
		if k.NotBefore().Before(k.NotAfter()) {
			if err != nil {
				t.Fatalf("Verify at not-before of a parsed key: %v", err)
			}
		} else if code := catalog.CodeOf(err); code != catalog.CodeKeyExpired {
			t.Fatalf("Verify of an empty window: got %v, want %s", err, catalog.CodeKeyExpired)
		}
	})
}

func sameJumpoints(a, b []installerkey.JumpointRef) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].ID != b[i].ID || a[i].Name != b[i].Name || !slices.EqualFunc(a[i].Addrs, b[i].Addrs, ma.Multiaddr.Equal) {
			return false
		}
	}
	return true
}
