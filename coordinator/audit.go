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
//
//	a/<big-endian unix nanos><instance>\x00<sequence, 4 bytes>
//
// so a scan from a time is a prefix seek. The order of the log is the
// order of its keys: the event's time on the clock of the coordinator
// that wrote it, then that coordinator's instance name, then its
// sequence. Every reader sees that one order, on any coordinator
// (doc.go, "One audit log across coordinators", says why time and not
// commit order).

// Audit event kinds.
const (
	AuditGrant   = "grant"
	AuditRefused = "refused"
	AuditStart   = "start"
	AuditEnd     = "end"
)

// auditSeq orders the events one process writes in one nanosecond. With
// the instance name in the key, coordinators sharing a store (etcd) never
// pick each other's keys; PutAudit still creates its key only if absent,
// so a reused key (a clock set back, two stores of one process) retries
// the transaction with the next sequence instead of overwriting.
var auditSeq = func() *atomic.Uint32 {
	var s atomic.Uint32
	s.Store(rand.Uint32())
	return &s
}()

// auditKey is the key of an event at t written by instance ("" for a
// store that is the site's only writer and names none).
func auditKey(t time.Time, instance string) []byte {
	k := make([]byte, 0, 2+8+len(instance)+1+4)
	k = append(k, "a/"...)
	k = binary.BigEndian.AppendUint64(k, uint64(t.UnixNano()))
	if instance != "" {
		k = append(append(k, instance...), 0)
	}
	return binary.BigEndian.AppendUint32(k, auditSeq.Add(1))
}

// auditTimePrefix is the start of the keys of events at t.
func auditTimePrefix(t time.Time) []byte {
	return binary.BigEndian.AppendUint64([]byte("a/"), uint64(t.UnixNano()))
}

// PutAudit appends an event (tests, and writers that name no instance).
func (tx *Tx) PutAudit(e *pb.AuditEvent) error {
	_, err := tx.putAudit(e, "")
	return err
}

// putAudit appends an event written by instance and returns its key.
func (tx *Tx) putAudit(e *pb.AuditEvent, instance string) ([]byte, error) {
	v, err := proto.Marshal(e)
	if err != nil {
		return nil, err
	}
	k := auditKey(time.Unix(0, e.GetTimeUnixNano()), instance)
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
	err := s.store.Update(func(tx *Tx) error { _, err := tx.putAudit(e, s.store.Instance()); return err })
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
