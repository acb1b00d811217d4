package coordinator

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/coordinator/etcdtest"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// BenchmarkStore measures one store operation on each backend in the same
// run: Badger in a temporary directory (synced writes) against one etcd
// member on loopback (in this process). A peer record of ~300 bytes.
//
//	go test ./coordinator -run '^$' -bench BenchmarkStore -benchtime 2000x
func BenchmarkStore(b *testing.B) {
	backends := []struct {
		name string
		open func(b *testing.B) *Store
	}{
		{"badger", func(b *testing.B) *Store {
			st, err := OpenStore(filepath.Join(b.TempDir(), "db"), StoreOptions{})
			if err != nil {
				b.Fatal(err)
			}
			return st
		}},
		{"etcd", func(b *testing.B) *Store {
			srv := etcdtest.Start(b, etcdtest.Options{})
			st, err := OpenEtcdStore(EtcdConfig{Endpoints: []string{srv.Endpoint}, Prefix: "/jumpmesh/bench/"})
			if err != nil {
				b.Fatal(err)
			}
			return st
		}},
	}
	rec := func(i int) *pb.Peer {
		return &pb.Peer{Id: fmt.Appendf(nil, "\x00\x24peer-%06d", i), InstallerId: "installer-0123456789",
			Settings:       &pb.InstallerDefaults{Name: fmt.Sprintf("host-%06d", i), Tag: "linux", Comments: "a comment of some length, as operators write them"},
			LastAccessUnix: int64(i)}
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			st := be.open(b)
			defer st.Close()
			const stored = 1000
			for from := 0; from < stored; from += 100 {
				mustUpdate(b, st, func(tx *Tx) error {
					for i := from; i < from+100; i++ {
						if err := tx.PutPeer(rec(i)); err != nil {
							return err
						}
					}
					return nil
				})
			}
			b.Run("get", func(b *testing.B) {
				for i := 0; b.Loop(); i++ {
					st.View(func(tx *Tx) error { _, err := tx.Peer(peerID(rec(i % stored))); return err })
				}
			})
			b.Run("update-read-modify-write", func(b *testing.B) {
				for i := 0; b.Loop(); i++ {
					mustUpdate(b, st, func(tx *Tx) error {
						p, err := tx.Peer(peerID(rec(i % stored)))
						if err != nil {
							return err
						}
						p.LastAccessUnix++
						return tx.PutPeer(p)
					})
				}
			})
			b.Run("audit-append", func(b *testing.B) {
				for i := 0; b.Loop(); i++ {
					mustUpdate(b, st, func(tx *Tx) error {
						return tx.PutAudit(&pb.AuditEvent{Kind: AuditEnd, TimeUnixNano: int64(i + 1), Detail: "bench"})
					})
				}
			})
			b.Run("list-1000-peers", func(b *testing.B) {
				for b.Loop() {
					st.View(func(tx *Tx) error { _, err := tx.Peers(); return err })
				}
			})
		})
	}
}

func peerID(p *pb.Peer) peer.ID { return peer.ID(p.GetId()) }
