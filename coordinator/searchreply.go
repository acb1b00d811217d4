package coordinator

import (
	"sync/atomic"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// A peer list's reply is built from bytes, not messages (issue 16: `ls`
// at 100,000 stored peers, p99 ≤ 20 ms through a console). Each entry
// keeps its view's record encoded (peerEntry.encoded: the record with its
// latest statistics and contact, as sharedView gives it), made at the
// first list that shows it after a change; a reply is those bytes with
// each view's status, one after another, as a repeated field is on the
// wire. The list carries them as its unknown fields (PeerList.peers is
// field 1 in either case), so the control stream writes them with one
// copy and a console decodes an ordinary PeerList: the wire is what it
// was. Building the 1,000 views of a list as messages (a view, a record
// sharing its parts) then sizing and marshalling them was 4–7 ms of a
// 190 KB `tag:linux status:offline` reply in the coordinator; copying
// their bytes is tens of microseconds once they are encoded.
//
// The bytes follow every write of an entry: the registry's writers file
// (searchIndex.file) or refresh (searchIndex.refresh) an entry in the same
// critical section as any change to its record, statistics or contact,
// and both drop its bytes. The status is not in them (it changes with the
// clock), nor is anything a list does not carry (addresses, relays).

// Field numbers of what a reply holds (mesh/pb/control.proto).
const (
	peerListPeersField  = 1 // PeerList.peers
	peerViewPeerField   = 1 // PeerView.peer
	peerViewStatusField = 2 // PeerView.status
)

// encoded is e's record as a list shows it (sharedView), encoded: kept
// until a writer drops it. The registry's lock is held, read or write; two
// readers may encode it at once, and both store the same bytes.
func (e *peerEntry) encoded() []byte { return encodeOnce(&e.enc, e.sharedView) }

// encodedTable is encoded for a table's list: tableView's fields only.
func (e *peerEntry) encodedTable() []byte { return encodeOnce(&e.encTable, e.tableView) }

// encodedAs is encoded or encodedTable, as view asks.
func (e *peerEntry) encodedAs(view pb.PeerListView) []byte {
	if view == pb.PeerListView_PEER_LIST_VIEW_TABLE {
		return e.encodedTable()
	}
	return e.encoded()
}

func encodeOnce(cache *atomic.Pointer[[]byte], rec func() *pb.Peer) []byte {
	if b := cache.Load(); b != nil {
		return *b
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(rec())
	if err != nil {
		// A record the store accepted always encodes; were it not, the
		// list would show the peer without its record rather than fail.
		b = []byte{}
	}
	cache.Store(&b)
	return b
}

// tableView is the part of sharedView that `jumpmesh ls` prints in its
// table (PEER_LIST_VIEW_TABLE): the ID, name, jump group, tag, the first
// private IP, the public address, the console users, the last contact
// and the jumpoints. It only leaves fields out of the record; nothing in
// it is computed for the caller.
func (e *peerEntry) tableView() *pb.Peer {
	v, set, info := e.sharedView(), e.rec.GetSettings(), e.rec.GetInfo()
	rec := &pb.Peer{Id: v.Id, PublicAddr: v.PublicAddr, LastSeenUnix: v.LastSeenUnix, Jumpoints: v.Jumpoints}
	if set.GetName() != "" || set.GetGroup() != "" || set.GetTag() != "" {
		rec.Settings = &pb.InstallerDefaults{Name: set.GetName(), Group: set.GetGroup(), Tag: set.GetTag()}
	}
	if ips, users := info.GetPrivateIps(), info.GetConsoleUsers(); len(ips) > 0 || len(users) > 0 {
		rec.Info = &pb.PeerInfo{PrivateIps: ips[:min(1, len(ips))], ConsoleUsers: users}
	}
	if users := v.GetStats().GetConsoleUsers(); len(users) > 0 {
		rec.Stats = &pb.PeerStats{ConsoleUsers: users}
	}
	return rec
}

// appendListedView appends one PeerList.peers entry: a view of the record
// encoded as rec with status.
func appendListedView(out, rec []byte, status string) []byte {
	n := protowire.SizeTag(peerViewPeerField) + protowire.SizeBytes(len(rec))
	if status != "" {
		n += protowire.SizeTag(peerViewStatusField) + protowire.SizeBytes(len(status))
	}
	out = protowire.AppendTag(out, peerListPeersField, protowire.BytesType)
	out = protowire.AppendVarint(out, uint64(n))
	out = protowire.AppendTag(out, peerViewPeerField, protowire.BytesType)
	out = protowire.AppendBytes(out, rec)
	if status != "" {
		out = protowire.AppendTag(out, peerViewStatusField, protowire.BytesType)
		out = protowire.AppendString(out, status)
	}
	return out
}

// findEncoded runs r against the index as find does and returns the
// first r.limit matches' views encoded as PeerList.peers entries, stopping
// before the one that would take the reply past budget bytes; how many
// views that is, and how many matched in all.
func (x *searchIndex) findEncoded(r searchRequest, budget int) (raw []byte, n, total int) {
	matches, total := x.first(r)
	for _, i := range matches {
		s := &x.slots[i]
		rec, status := s.e.encodedAs(r.view), s.status(r.settings, r.now)
		if len(raw) == 0 {
			raw = make([]byte, 0, min(budget, len(matches)*(len(rec)+len(status)+16)))
		}
		before := len(raw)
		raw = appendListedView(raw, rec, status)
		if len(raw) > budget {
			return raw[:before], n, total
		}
		n++
	}
	return raw, n, total
}

// findEncoded is searchIndex.findEncoded under the registry's read lock.
func (r *registry) findEncoded(req searchRequest, budget int) ([]byte, int, int) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.index.findEncoded(req, budget)
}

// encodedPeerList is a PeerList whose views are raw, PeerList.peers
// entries as findEncoded gives them: on the wire, and to any reader that
// decodes it, the same list as one built of messages. A reader in this
// process (a test, the sim's in-process service) gets them with
// PeerListViews.
func encodedPeerList(raw []byte, total int) *pb.PeerList {
	l := &pb.PeerList{Total: uint32(total)}
	if len(raw) > 0 {
		l.ProtoReflect().SetUnknown(raw)
	}
	return l
}

// PeerListViews is the views of a peer list: its Peers, or, for a list
// the control service built in this process (whose views are still
// encoded), those decoded.
func PeerListViews(l *pb.PeerList) ([]*pb.PeerView, error) {
	raw := l.ProtoReflect().GetUnknown()
	if len(raw) == 0 {
		return l.GetPeers(), nil
	}
	var d pb.PeerList
	if err := proto.Unmarshal(raw, &d); err != nil {
		return nil, err
	}
	return append(l.GetPeers(), d.GetPeers()...), nil
}
