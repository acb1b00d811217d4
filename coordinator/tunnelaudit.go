package coordinator

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Auditing the tunnels a jumpoint reports (agentless.go).
//
// One report carries up to MaxTunnelReports records, more writes than one
// etcd transaction takes (128 operations by default), so the records are
// written in chunks that fit the backend (tunnelChunk). A report is then no
// longer all or nothing: when a later chunk fails, the refresh fails and
// the jumpoint sends the same records again, the first chunks included.
// Each record therefore leaves a marker written with its event,
//
//	at/<tunnel end, unix nanos big-endian><16 bytes of SHA-256>
//
// whose value is when it was written (8 bytes, unix nanos) and the event's
// a/ key. The hash covers the jumpoint, the record as reported and how many
// identical records came before it in the report (the jumpoint reports its
// oldest records first, so a resend has them at the same places). A record
// whose marker exists is skipped: a resend, to this coordinator or to
// another one of the site, audits nothing twice. On etcd, two coordinators
// writing one marker at once conflict on its absence and one skips it.
//
// Markers are swept once both the tunnel's end and the marker's writing
// are older than tunnelMarkHorizon: a record resent later than that (the
// jumpoint kept it for a week, every answer lost) would be audited again.

const tunnelMarkPrefix = "at/"

// tunnelMarkHorizon is how long a tunnel record's marker is kept.
const tunnelMarkHorizon = 7 * 24 * time.Hour

// tunnelSweepBatch bounds the markers one sweep looks at.
const tunnelSweepBatch = 1024

// tunnelChunk is how many tunnel records one transaction writes: each
// writes its event and its marker, and checks both are absent; a few
// operations are left for the store's own checks (the member fence, range
// compares). Badger takes a whole report at once.
func (s *Store) tunnelChunk() int {
	if e, ok := s.kv.(*etcdKV); ok {
		return max(1, (e.cfg.maxTxnOps()-8)/2)
	}
	return MaxTunnelReports
}

// tunnelMarkKey is the marker of the nth record identical to t (0 for the
// first) in a report of jumpoint.
func tunnelMarkKey(jumpoint string, t *pb.TunnelRecord, nth int) []byte {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(t)
	h := sha256.New()
	h.Write([]byte("jumpmesh tunnel record\x00"))
	h.Write([]byte(jumpoint))
	h.Write([]byte{0})
	h.Write(binary.BigEndian.AppendUint32(nil, uint32(nth)))
	h.Write(b)
	k := make([]byte, 0, len(tunnelMarkPrefix)+8+16)
	k = append(k, tunnelMarkPrefix...)
	k = binary.BigEndian.AppendUint64(k, uint64(max(0, t.GetEndedUnixNano())))
	return append(k, h.Sum(nil)[:16]...)
}

// auditTunnels writes the agentless tunnels a jumpoint reported, one
// event each, in chunks that fit one transaction; when one fails the
// refresh fails, and the jumpoint, which forgets records only once a
// refresh is answered, reports them again (the markers above keep the
// chunks already written from being written twice). The jumpoint is a
// member of the site and the only witness of its tunnels; the coordinator
// bounds and cleans what it says (at most MaxTunnelReports, fields cut to
// size) and names the user by the technician's key where it still knows
// it.
func (s *Service) auditTunnels(c *caller, r *pb.JumpointACLRequest) error {
	recs := r.GetTunnels()
	if len(recs) > MaxTunnelReports {
		s.log.Warn("jumpoint reported more tunnels than one refresh carries; auditing the first", logUser, c.name(),
			"reported", len(recs), "kept", MaxTunnelReports)
		recs = recs[:MaxTunnelReports]
	}
	if n := r.GetTunnelsDropped(); n > 0 {
		s.log.Warn("jumpoint dropped tunnel records before it could report them", logUser, c.name(), "dropped", n)
		_ = s.audit(&pb.AuditEvent{Kind: AuditTunnel, User: c.name(), Jumpoint: c.name(), Code: string(catalog.CodeServerBusy),
			Detail: fmt.Sprintf("the jumpoint dropped %d tunnel records it could not report", n)})
	}
	if len(recs) == 0 {
		return nil
	}
	marks := make([][]byte, len(recs))
	seen := make(map[string]int, len(recs))
	for i, t := range recs {
		b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(t)
		marks[i] = tunnelMarkKey(c.name(), t, seen[string(b)])
		seen[string(b)]++
	}
	now := s.clock.Now()
	at := now.UnixNano()
	chunk := s.store.tunnelChunk()
	written, skipped := 0, 0
	for lo := 0; lo < len(recs); lo += chunk {
		hi := min(lo+chunk, len(recs))
		var w, sk int
		err := s.store.Update(func(tx *Tx) error {
			w, sk = 0, 0
			for i := lo; i < hi; i++ {
				ok, err := tx.auditTunnel(c.name(), s.store.Instance(), recs[i], marks[i], at+int64(i), now)
				if err != nil {
					return err
				}
				if ok {
					w++
				} else {
					sk++
				}
			}
			return nil
		})
		if err != nil {
			// The jumpoint keeps the records and reports them again.
			s.log.Error("recording a jumpoint's tunnels", logUser, c.name(), "tunnels", len(recs), "written", written, logError, err)
			return catalog.NewError(catalog.CodeAuditFailed)
		}
		written, skipped = written+w, skipped+sk
	}
	if skipped > 0 {
		s.log.Info("jumpoint reported tunnels already audited (a resend); skipped them", logUser, c.name(), "skipped", skipped, "written", written)
	}
	if err := s.store.Update(func(tx *Tx) error { return tx.sweepTunnelMarks(now, s.store.tunnelChunk()) }); err != nil {
		s.log.Warn("sweeping old tunnel markers", logError, err)
	}
	return nil
}

// auditTunnel writes one reported tunnel's event (at the key time at) and
// its marker, unless the marker is there: then it writes nothing and
// returns false.
func (tx *Tx) auditTunnel(jumpoint, instance string, t *pb.TunnelRecord, mark []byte, at int64, now time.Time) (bool, error) {
	if _, ok, err := tx.kv.get(mark); err != nil || ok {
		return false, err
	}
	e := &pb.AuditEvent{Kind: AuditTunnel, TimeUnixNano: at, User: cut(t.GetUser(), 64), Jumpoint: jumpoint,
		Target: cut(t.GetTarget(), 64), BytesIn: t.GetBytesIn(), BytesOut: t.GetBytesOut(),
		StartedUnixNano: t.GetStartedUnixNano(), EndedUnixNano: t.GetEndedUnixNano(), Capability: grant.Forward}
	if id, err := peer.IDFromBytes(t.GetTechnician()); err == nil {
		e.Technician = []byte(id)
		if name, err := tx.UserByKey(id); err == nil && name != "" {
			e.User = name
		}
	}
	if n := t.GetGrantNonce(); len(n) > 0 && len(n) <= 32 {
		e.SessionId = fmt.Sprintf("%x", n)
	}
	d := time.Duration(t.GetEndedUnixNano() - t.GetStartedUnixNano())
	e.Detail = fmt.Sprintf("via jumpoint %s, %s", jumpoint, d.Round(time.Millisecond))
	key, err := tx.putAudit(e, instance)
	if err != nil {
		return false, err
	}
	v := binary.BigEndian.AppendUint64(nil, uint64(now.UnixNano()))
	return true, tx.kv.set(mark, append(v, key...))
}

// sweepTunnelMarks deletes up to limit markers whose tunnel ended and
// whose writing happened more than tunnelMarkHorizon before now.
func (tx *Tx) sweepTunnelMarks(now time.Time, limit int) error {
	horizon := uint64(now.Add(-tunnelMarkHorizon).UnixNano())
	end := binary.BigEndian.AppendUint64([]byte(tunnelMarkPrefix), horizon)
	var old [][]byte
	looked := 0
	err := tx.kv.scan([]byte(tunnelMarkPrefix), nil, false, func(k, v []byte) (bool, error) {
		looked++
		if bytes.Compare(k, end) >= 0 || looked > tunnelSweepBatch || len(old) >= limit {
			return false, nil
		}
		if len(v) >= 8 && binary.BigEndian.Uint64(v) < horizon {
			old = append(old, bytes.Clone(k))
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	for _, k := range old {
		if err := tx.kv.delete(k); err != nil {
			return err
		}
	}
	return nil
}
