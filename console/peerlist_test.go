package console

import (
	"math/rand/v2"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestAppendPeerIDIsPeerIDString: the list's base58 is peer.ID's String
// for IDs of every length to 200 bytes, with and without leading zero
// bytes (an Ed25519 peer ID's identity multihash starts with one), all
// zeros and all ones.
func TestAppendPeerIDIsPeerIDString(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	check := func(id []byte) {
		if got, want := string(appendPeerID([]byte("x"), id)), "x"+peer.ID(id).String(); got != want {
			t.Fatalf("%x: %s, peer.ID prints %s", id, got, want)
		}
	}
	for n := 0; n <= 200; n++ {
		for range 20 {
			id := make([]byte, n)
			for i := range id {
				id[i] = byte(rng.Uint32())
			}
			for z := 0; z < min(n, 3) && rng.IntN(2) == 0; z++ {
				id[z] = 0
			}
			check(id)
		}
		check(make([]byte, n))
		ones := make([]byte, n)
		for i := range ones {
			ones[i] = 0xff
		}
		check(ones)
	}
}
