package coordinator

import (
	"encoding/binary"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// The audit log: every grant, refusal, session start and end, and every
// administrative change (admin.go), under
// a/<big-endian unix nanos><sequence>, so a scan from a time is a prefix seek.

// Audit event kinds.
const (
	AuditGrant   = "grant"
	AuditRefused = "refused"
	AuditStart   = "start"
	AuditEnd     = "end"
)

// auditSeq orders events of one nanosecond. It starts at a random value so
// that coordinators sharing a store (etcd) rarely pick the same key, and
// PutAudit creates its key only if absent: a collision (another coordinator,
// or a clock set back) retries the transaction with the next sequence.
var auditSeq = func() *atomic.Uint32 {
	var s atomic.Uint32
	s.Store(rand.Uint32())
	return &s
}()

func auditKey(t time.Time) []byte {
	k := make([]byte, 2+8+4)
	copy(k, "a/")
	binary.BigEndian.PutUint64(k[2:], uint64(t.UnixNano()))
	binary.BigEndian.PutUint32(k[10:], auditSeq.Add(1))
	return k
}

// PutAudit appends an event.
func (tx *Tx) PutAudit(e *pb.AuditEvent) error {
	_, err := tx.putAudit(e)
	return err
}

// putAudit appends an event and returns its key.
func (tx *Tx) putAudit(e *pb.AuditEvent) ([]byte, error) {
	v, err := proto.Marshal(e)
	if err != nil {
		return nil, err
	}
	k := auditKey(time.Unix(0, e.GetTimeUnixNano()))
	if err := tx.kv.create(k, v); err != nil {
		return nil, err
	}
	return k, tx.indexGrant(e, k)
}

// audit records an event; a failure to record is logged, never hidden, and
// returned: a grant whose event is not stored is not issued.
func (s *Service) audit(e *pb.AuditEvent) error {
	if e.GetTimeUnixNano() == 0 {
		e.TimeUnixNano = s.clock.Now().UnixNano()
	}
	err := s.store.Update(func(tx *Tx) error { return tx.PutAudit(e) })
	if err != nil {
		s.log.Error("recording audit event", "kind", e.GetKind(), logError, err)
	}
	return err
}

func (s *Service) auditList(c *caller, r *pb.AuditRequest) (*pb.Response, error) {
	if err := c.requireAdmin(); err != nil {
		return nil, err
	}
	var peerID peer.ID
	if r.GetPeer() != "" {
		v, err := s.resolvePeerAny(r.GetPeer())
		if err != nil {
			return nil, err
		}
		peerID = v
	}
	var out []*pb.AuditEvent
	var next []byte
	err := s.view(func(tx *Tx) (err error) {
		out, next, err = tx.AuditPage(time.Unix(r.GetSinceUnix(), 0), r.GetCursor(), func(e *pb.AuditEvent) bool {
			return (peerID == "" || peer.ID(e.GetPeer()) == peerID) && (r.GetUser() == "" || e.GetUser() == r.GetUser()) &&
				(r.GetKind() == "" || e.GetKind() == r.GetKind())
		}, int(r.GetLimit()))
		return err
	})
	if err != nil {
		return nil, err
	}
	return &pb.Response{Body: &pb.Response_Audit{Audit: &pb.AuditList{Events: out, NextCursor: next}}}, nil
}

// resolvePeerAny finds a peer by ID or exact name among all records,
// deleted ones included (the audit outlives peers).
func (s *Service) resolvePeerAny(ref string) (peer.ID, error) {
	if id, err := peer.Decode(ref); err == nil {
		return id, nil
	}
	var found []peer.ID
	for _, p := range s.peers.snapshot() {
		if strings.EqualFold(p.rec.GetSettings().GetName(), ref) {
			found = append(found, peer.ID(p.rec.GetId()))
		}
	}
	switch len(found) {
	case 0:
		return "", catalog.Errorf(catalog.CodePeerNotFound, "(%s; give the peer ID of a removed peer)", ref)
	case 1:
		return found[0], nil
	}
	return "", catalog.Errorf(catalog.CodePeerAmbiguous, "(%q names %d peers)", ref, len(found))
}
