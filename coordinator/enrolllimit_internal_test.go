package coordinator

import (
	"crypto/rand"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/installerkey"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// TestConcurrentEnrollmentsKeepTheBuildLimit: hosts enrolling all at once
// with a valid installer key (a fleet installed at once, or someone who
// holds the key and races to pass the site's max-peers) never pass it:
// with max-peers N, exactly N of 3N concurrent enrollments enroll and the
// others are refused with build_limit_total, nothing of theirs stored.
// Without a limit, enrollments are not serialised (they commit side by
// side, enroll.go) and all of them enroll.
func TestConcurrentEnrollmentsKeepTheBuildLimit(t *testing.T) {
	for _, limit := range []int{0, 5} {
		t.Run(fmt.Sprintf("max-peers=%d", limit), func(t *testing.T) {
			st, err := OpenStore(filepath.Join(t.TempDir(), "db"), StoreOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			now := time.Now()
			clock := mesh.NewManualClock(now)
			svc := addressedService(t, st, clock)
			settings := DefaultSettings()
			settings.MaxPeers = uint32(limit)
			body := &pb.InstallerKeyBody{InstallerId: "in-1", SiteId: []byte(svc.siteID), NotAfterUnix: now.Add(time.Hour).Unix(),
				Defaults: &pb.InstallerDefaults{Group: "fleet"}}
			key, err := installerkey.Sign(body, svc.signer)
			if err != nil {
				t.Fatal(err)
			}
			mustUpdate(t, st, func(tx *Tx) error {
				if err := tx.PutSettings(settings); err != nil {
					return err
				}
				return tx.PutInstaller(&pb.Installer{Id: "in-1", Key: key, Body: body})
			})
			svc.reloadSettings()
			hosts := 15
			if limit > 0 {
				hosts = 3 * limit
			}
			errs := make([]error, hosts)
			ids := make([]peer.ID, hosts)
			var wg sync.WaitGroup
			for i := range hosts {
				_, pub, err := crypto.GenerateEd25519Key(rand.Reader)
				if err != nil {
					t.Fatal(err)
				}
				if ids[i], err = peer.IDFromPublicKey(pub); err != nil {
					t.Fatal(err)
				}
				wg.Go(func() {
					hello := &pb.PeerHello{InstallerKey: key, Info: &pb.PeerInfo{Hostname: fmt.Sprint("host-", i)}}
					_, _, errs[i] = svc.registerPeer(ids[i], hello, "192.0.2.9", now, newPeerSession(ids[i], nil))
				})
			}
			wg.Wait()
			enrolled := 0
			for i, err := range errs {
				var rec *pb.Peer
				if err := st.View(func(tx *Tx) (err error) { rec, err = tx.Peer(ids[i]); return err }); err != nil {
					t.Fatal(err)
				}
				switch {
				case err == nil && rec != nil:
					enrolled++
				case err == nil:
					t.Fatalf("host %d: enrolled, but no record stored", i)
				case catalog.CodeOf(err) != catalog.CodeBuildLimitTotal:
					t.Fatalf("host %d: %v, want enrolled or %s", i, err, catalog.CodeBuildLimitTotal)
				case rec != nil:
					t.Fatalf("host %d: refused (%v), but its record was stored", i, err)
				}
			}
			want := hosts
			if limit > 0 {
				want = limit
			}
			if enrolled != want {
				t.Fatalf("%d of %d concurrent enrollments enrolled, want %d (max-peers %d)", enrolled, hosts, want, limit)
			}
		})
	}
}
