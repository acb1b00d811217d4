package installerkey_test

import (
	"testing"

	"github.com/jumpmesh/jumpmesh/mesh/installerkey"
)

func BenchmarkSign(b *testing.B) {
	s := newSite(b)
	body := testBody(b, s.id, newSite(b).id)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := installerkey.Sign(body, s.signer); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	s := newSite(b)
	key := sign(b, testBody(b, s.id, newSite(b).id), s)
	opts := installerkey.VerifyOptions{Site: s.id, Now: t0}
	b.SetBytes(int64(len(key)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := installerkey.Verify(key, opts); err != nil {
			b.Fatal(err)
		}
	}
}
