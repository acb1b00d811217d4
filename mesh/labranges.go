package mesh

import (
	"errors"
	"net"
	"sync"

	manet "github.com/multiformats/go-multiaddr/net"
)

// LabPublicRangesEnv, set to 1, makes a jumpmesh process treat the
// documentation ranges 198.51.100.0/24 and 203.0.113.0/24 as public
// Internet addresses. The network lab (sim/) uses them for its "public"
// side, and go-multiaddr classes them as unroutable, so without this
// libp2p would never consider a lab host publicly reachable and hole
// punching would never start. Lab only: never set it in production.
//
// Only the binary's main reads it, once, before it builds any host (see
// EnableLabPublicRanges); libraries and tests never look at it.
const LabPublicRangesEnv = "JUMPMESH_LAB_PUBLIC_RANGES"

var labRangesOnce sync.Once

// ErrHostsRunning is returned by EnableLabPublicRanges once a host exists.
var ErrHostsRunning = errors.New("go-multiaddr's address classes can only change before the first libp2p host")

// EnableLabPublicRanges removes the lab's documentation ranges from
// go-multiaddr's unroutable list, for the whole process. It changes a
// package variable that hosts read without a lock, so it must be called at
// process start, before the first NewHost; after that it changes nothing
// and returns ErrHostsRunning.
func EnableLabPublicRanges() error {
	if hostBuilt.Load() {
		return ErrHostsRunning
	}
	labRangesOnce.Do(func() {
		lab := []string{"198.51.100.0/24", "203.0.113.0/24"}
		kept := manet.Unroutable4[:0:0]
		for _, n := range manet.Unroutable4 {
			if !containsCIDR(lab, n) {
				kept = append(kept, n)
			}
		}
		manet.Unroutable4 = kept
	})
	return nil
}

func containsCIDR(cidrs []string, n *net.IPNet) bool {
	for _, c := range cidrs {
		if n.String() == c {
			return true
		}
	}
	return false
}
