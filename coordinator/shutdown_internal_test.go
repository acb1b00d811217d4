package coordinator

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// At shutdown every online peer's last contact and statistics reach the
// store in batches of modifyBatch (the batch boundaries are crossed);
// offline peers keep theirs. (BenchmarkReconnectStorm logs the time a
// real coordinator with 2,000 online peers takes to close.)
func TestShutdownRecordsLastContactInBatches(t *testing.T) {
	const online, offline = 3*modifyBatch + 5, 10
	st, err := OpenStore(filepath.Join(t.TempDir(), "db"), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	then := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	var ids []peer.ID
	err = st.Update(func(tx *Tx) error {
		for i := range online + offline {
			p := fakePeer(t, i, "user:ann", then)
			p.LastSeenUnix = then.Unix()
			ids = append(ids, peer.ID(p.GetId()))
			if err := tx.PutPeer(p); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	now := then.Add(time.Hour)
	svc := serviceOver(t, st, now)
	for _, id := range ids[:online] {
		svc.peers.attach(id, newPeerSession(id, nil))
		svc.peers.touch(id, now, &pb.PeerStats{Cpus: 42})
	}
	svc.recordOffline()
	if !svc.closing.Load() {
		t.Fatal("sessions ending after recordOffline would write again")
	}
	err = st.View(func(tx *Tx) error {
		for i, id := range ids {
			rec, err := tx.Peer(id)
			if err != nil {
				return err
			}
			want, stats := then.Unix(), false
			if i < online {
				want, stats = now.Unix(), true
			}
			if rec.GetLastSeenUnix() != want || (rec.GetStats().GetCpus() == 42) != stats {
				t.Errorf("peer %d (online %v): last seen %d, stats %v; want %d, stats %v",
					i, i < online, rec.GetLastSeenUnix(), rec.GetStats(), want, stats)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
