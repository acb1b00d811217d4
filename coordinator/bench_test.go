package coordinator_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// BenchmarkStorePut measures one durable (fsynced) write transaction on a
// real Badger in a temp dir: what every acknowledged admin change costs.
func BenchmarkStorePut(b *testing.B) {
	st := openBenchStore(b)
	in := benchInstaller()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		in.Id = fmt.Sprintf("inst%08d", i)
		if err := st.Update(func(tx *coordinator.Tx) error { return tx.PutInstaller(in) }); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStoreGet measures one read transaction of one record.
func BenchmarkStoreGet(b *testing.B) {
	st := openBenchStore(b)
	in := benchInstaller()
	const n = 1000
	for i := 0; i < n; i++ {
		in.Id = fmt.Sprintf("inst%08d", i)
		if err := st.Update(func(tx *coordinator.Tx) error { return tx.PutInstaller(in) }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := fmt.Sprintf("inst%08d", i%n)
		err := st.View(func(tx *coordinator.Tx) error {
			got, err := tx.Installer(id)
			if err == nil && got == nil {
				err = fmt.Errorf("%s missing", id)
			}
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

func openBenchStore(b *testing.B) *coordinator.Store {
	b.Helper()
	st, err := coordinator.OpenStore(filepath.Join(b.TempDir(), "db"), coordinator.StoreOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return st
}

func benchInstaller() *pb.Installer {
	return &pb.Installer{Key: "jmk1." + string(make([]byte, 400)), CreatedBy: "admin", CreatedUnix: time.Now().Unix(),
		Body: &pb.InstallerKeyBody{Defaults: &pb.InstallerDefaults{Group: "jumpgroup:servers", Tag: "linux"}}}
}

// BenchmarkControlRequest is one authenticated control request from a real
// console to a real coordinator on loopback (read-only: whoami).
func BenchmarkControlRequest(b *testing.B) {
	h := newHarnessTB(b)
	ctx := h.ctx()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := h.admin.WhoAmI(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInstallerCreate is a full installer creation over the wire:
// validation, signing and a durable write.
func BenchmarkInstallerCreate(b *testing.B) {
	h := newHarnessTB(b)
	ctx := h.ctx()
	req := &pb.InstallerCreateRequest{ValidForSeconds: 3600, Defaults: &pb.InstallerDefaults{Tag: "bench"}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := h.admin.CreateInstaller(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
