package coordinator

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/control"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Reading the audit log in pages, and finding a grant's event.
//
// A reply holds the newest events before a cursor (the key of the oldest
// event of the previous page) that fit one control message; the console
// follows the cursor until it has what it asked for. Each grant's event is
// indexed by its nonce (ag/<hex nonce> → its a/ key) so that a peer's
// report can be checked against the grant it names.

// Page bounds of an audit reply.
const (
	// auditPageEvents is the most events one reply carries (and what a
	// request without a limit gets).
	auditPageEvents = 1000
	// auditPageBytes leaves room in a control message for the envelope.
	auditPageBytes = control.MaxMessage - 64<<10
	// auditServeField bounds each text field of an event in a reply, so
	// that every event fits (events stored before details were bounded may
	// hold hundreds of KiB).
	auditServeField = 4 << 10
)

const grantIndexPrefix = "ag/"

// indexGrant points a grant's nonce at its audit event.
func (tx *Tx) indexGrant(e *pb.AuditEvent, key []byte) error {
	if e.GetKind() != AuditGrant || e.GetSessionId() == "" {
		return nil
	}
	return tx.kv.set([]byte(grantIndexPrefix+e.GetSessionId()), key)
}

// GrantEvent returns the audit event of the grant with nonce, or nil.
func (tx *Tx) GrantEvent(nonce []byte) (*pb.AuditEvent, error) {
	key, ok, err := tx.kv.get([]byte(grantIndexPrefix + hex.EncodeToString(nonce)))
	if err != nil {
		return nil, fmt.Errorf("reading grant index: %w", err)
	}
	if !ok || !bytes.HasPrefix(key, []byte("a/")) {
		return nil, nil
	}
	v, ok, err := tx.kv.get(key)
	if err != nil {
		return nil, fmt.Errorf("reading grant event: %w", err)
	}
	if !ok {
		return nil, nil
	}
	e := new(pb.AuditEvent)
	if err := proto.Unmarshal(v, e); err != nil {
		return nil, fmt.Errorf("decoding grant event: %w", err)
	}
	if e.GetKind() != AuditGrant {
		return nil, nil
	}
	return e, nil
}

// AuditPage returns, oldest first, the newest events at or after since and
// before cursor (nil: the end of the log) that keep accepts: at most limit
// (≤ auditPageEvents; 0 for that many) and what fits auditPageBytes. next
// is the cursor of the page before, nil when there is none.
func (tx *Tx) AuditPage(since time.Time, cursor []byte, keep func(*pb.AuditEvent) bool, limit int) (events []*pb.AuditEvent, next []byte, err error) {
	if limit <= 0 || limit > auditPageEvents {
		limit = auditPageEvents
	}
	first := auditTimePrefix(since)
	start := cursor
	if len(start) == 0 || !bytes.HasPrefix(start, []byte("a/")) {
		start = nil // the newest event
	}
	size, cut := 0, false
	var last []byte // key of the oldest event taken: the next page's cursor
	err = tx.kv.scan([]byte("a/"), start, true, func(k, v []byte) (bool, error) {
		if bytes.Compare(k, first) < 0 {
			return false, nil
		}
		if bytes.Equal(k, cursor) {
			return true, nil
		}
		e := new(pb.AuditEvent)
		if err := proto.Unmarshal(v, e); err != nil {
			return false, fmt.Errorf("decoding audit event: %w", err)
		}
		if !keep(e) {
			return true, nil
		}
		boundServed(e)
		n := proto.Size(e) + 8 // with the field's tag and length
		if len(events) == limit || size+n > auditPageBytes {
			cut = true
			return false, nil
		}
		size += n
		events = append(events, e)
		last = append(last[:0], k...)
		return true, nil
	})
	if err != nil {
		return nil, nil, err
	}
	slices.Reverse(events)
	if cut {
		return events, last, nil
	}
	return events, nil, nil
}

// boundServed cuts every text field of an event to auditServeField.
func boundServed(e *pb.AuditEvent) {
	for _, f := range []*string{&e.User, &e.PeerName, &e.Code, &e.Detail, &e.SessionId, &e.Kind, &e.Action, &e.Target} {
		*f = boundText(*f, auditServeField)
	}
	if e.Exit != nil {
		e.Exit.Error = boundText(e.Exit.GetError(), auditServeField)
		e.Exit.Signal = boundText(e.Exit.GetSignal(), auditServeField)
	}
	for _, b := range []*[]byte{&e.Technician, &e.Peer} {
		if len(*b) > auditServeField {
			*b = (*b)[:auditServeField]
		}
	}
}
