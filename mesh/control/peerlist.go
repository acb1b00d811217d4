package control

import (
	"math"
	"unicode/utf8"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// A console's list of 1,000 peers is a reply of ~190 KB that protobuf's
// decoder turned into ~12,000 objects, each string copied out of the
// reply, after setting up the reflection of every message type the first
// time (issue 16: `ls` at 100,000 stored peers). decodePeerList reads a
// reply that is a peer list into a few slabs — the views, the records and
// their parts, one of each per peer — whose strings and bytes alias the
// reply's buffer (which the reader allocated for it alone and nobody
// writes), and gives up on anything it does not know: a field it does not
// read, a wire type, invalid UTF-8 (protobuf refuses it), a message field
// twice (protobuf merges them). The caller then decodes with protobuf, so
// what it returns is always what proto.Unmarshal returns
// (TestDecodePeerListIsUnmarshal, FuzzDecodeResponse). A string kept from
// such a list keeps the whole reply's buffer: callers keep lists whole or
// not at all (a console prints them and exits).
//
// In sim scale's runs of a list of 1,000 (load 7-8): 0.8-0.9k objects per
// console run of this whole process instead of 12.9k, decoding 0.4 ms
// instead of 0.8-1.2 (p50).

// unmarshalResponse decodes a response's bytes.
func unmarshalResponse(raw []byte) (*pb.Response, error) {
	if resp, ok := decodePeerList(raw); ok {
		return resp, nil
	}
	resp := new(pb.Response)
	return resp, proto.Unmarshal(raw, resp)
}

// Field numbers of the messages decodePeerList reads (mesh/pb's .proto).
const (
	responsePeers            = 17
	responseCoordinatorAddrs = 41
	responseMemberLane       = 42
)

// decodePeerList is raw as a pb.Response whose body is a peer list, or
// false.
func decodePeerList(raw []byte) (*pb.Response, bool) {
	var resp pb.Response
	var list []byte
	seen := false
	b := raw
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.BytesType {
			return nil, false
		}
		b = b[n:]
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil, false
		}
		b = b[n:]
		switch num {
		case responsePeers:
			if seen {
				return nil, false
			}
			list, seen = v, true
		case responseCoordinatorAddrs:
			resp.CoordinatorAddrs = append(resp.CoordinatorAddrs, alias(v))
		case responseMemberLane:
			resp.MemberLane = append(resp.MemberLane, alias(v))
		default:
			return nil, false
		}
	}
	if !seen {
		return nil, false
	}
	peers, ok := decodeList(list)
	if !ok {
		return nil, false
	}
	resp.Body = &pb.Response_Peers{Peers: peers}
	return &resp, true
}

// listSlabs hold a list's messages, one of each kind per view.
type listSlabs struct {
	views    []pb.PeerView
	peers    []pb.Peer
	settings []pb.InstallerDefaults
	infos    []pb.PeerInfo
	stats    []pb.PeerStats
	strs     []string // the repeated strings, each field a full slice of it
}

func decodeList(b []byte) (*pb.PeerList, bool) {
	n := 0
	for rest := b; len(rest) > 0; {
		num, typ, k := protowire.ConsumeTag(rest)
		if k < 0 {
			return nil, false
		}
		if num == 1 {
			n++
		}
		k2 := protowire.ConsumeFieldValue(num, typ, rest[k:])
		if k2 < 0 {
			return nil, false
		}
		rest = rest[k+k2:]
	}
	s := &listSlabs{views: make([]pb.PeerView, n), peers: make([]pb.Peer, n), settings: make([]pb.InstallerDefaults, n),
		infos: make([]pb.PeerInfo, n), stats: make([]pb.PeerStats, n), strs: make([]string, 0, 2*n)}
	list := &pb.PeerList{Peers: make([]*pb.PeerView, 0, n)}
	for len(b) > 0 {
		num, typ, k := protowire.ConsumeTag(b)
		b = b[k:]
		switch num {
		case 1:
			v, ok := message(typ, &b)
			i := len(list.Peers)
			if !ok || !s.view(v, i) {
				return nil, false
			}
			list.Peers = append(list.Peers, &s.views[i])
		case 2:
			v, ok := varint(typ, &b)
			if !ok {
				return nil, false
			}
			list.Total = uint32(v)
		default:
			return nil, false
		}
	}
	return list, true
}

func (s *listSlabs) view(b []byte, i int) bool {
	v := &s.views[i]
	return eachField(b, func(num protowire.Number, typ protowire.Type, b *[]byte) bool {
		ok := true
		switch num {
		case 1:
			var m []byte
			if m, ok = message(typ, b); ok && v.Peer == nil {
				v.Peer = &s.peers[i]
				ok = s.peer(m, i)
			} else {
				ok = false
			}
		case 2:
			v.Status, ok = str(typ, b)
		default:
			return false
		}
		return ok
	})
}

func (s *listSlabs) peer(b []byte, i int) bool {
	p := &s.peers[i]
	return eachField(b, func(num protowire.Number, typ protowire.Type, b *[]byte) bool {
		var ok bool
		var u uint64
		var m []byte
		switch num {
		case 1:
			p.Id, ok = bytesField(typ, b)
		case 2:
			p.InstallerId, ok = str(typ, b)
		case 3:
			if m, ok = message(typ, b); ok && p.Settings == nil {
				p.Settings = &s.settings[i]
				ok = settings(m, p.Settings)
			} else {
				ok = false
			}
		case 4:
			if m, ok = message(typ, b); ok && p.Info == nil {
				p.Info = &s.infos[i]
				ok = s.info(m, p.Info)
			} else {
				ok = false
			}
		case 5:
			if m, ok = message(typ, b); ok && p.Stats == nil {
				p.Stats = &s.stats[i]
				ok = s.peerStats(m, p.Stats)
			} else {
				ok = false
			}
		case 6:
			p.PublicAddr, ok = str(typ, b)
		case 7:
			u, ok = varint(typ, b)
			p.InstalledUnix = int64(u)
		case 8:
			u, ok = varint(typ, b)
			p.LastSeenUnix = int64(u)
		case 9:
			u, ok = varint(typ, b)
			p.LastAccessUnix = int64(u)
		case 10:
			u, ok = varint(typ, b)
			p.Disabled = u != 0
		case 11:
			u, ok = varint(typ, b)
			p.UninstalledUnix = int64(u)
		case 12:
			u, ok = varint(typ, b)
			p.DeletedUnix = int64(u)
		case 13:
			p.DeletedBy, ok = str(typ, b)
		case 14:
			m, ok = bytesField(typ, b)
			p.Jumpoints = append(p.Jumpoints, m)
		case 15:
			u, ok = varint(typ, b)
			p.PassiveUnix = int64(u)
		}
		return ok
	})
}

func settings(b []byte, d *pb.InstallerDefaults) bool {
	return eachField(b, func(num protowire.Number, typ protowire.Type, b *[]byte) bool {
		var ok bool
		var u uint64
		switch num {
		case 1:
			d.Group, ok = str(typ, b)
		case 2:
			d.Tag, ok = str(typ, b)
		case 3:
			d.Comments, ok = str(typ, b)
		case 4:
			d.Name, ok = str(typ, b)
		case 5:
			d.JumpPolicy, ok = str(typ, b)
		case 6:
			d.SessionPolicyPresent, ok = str(typ, b)
		case 7:
			d.SessionPolicyNotPresent, ok = str(typ, b)
		case 8:
			u, ok = varint(typ, b)
			d.MaxOfflineMinutes = uint32(u)
		case 9:
			u, ok = varint(typ, b)
			d.Ephemeral = u != 0
		case 10:
			u, ok = varint(typ, b)
			d.ConnectionType = pb.ConnectionType(int32(u))
		}
		return ok
	})
}

func (s *listSlabs) info(b []byte, in *pb.PeerInfo) bool {
	return eachField(b, func(num protowire.Number, typ protowire.Type, b *[]byte) bool {
		var ok bool
		switch num {
		case 1:
			in.Hostname, ok = str(typ, b)
		case 2:
			in.Os, ok = str(typ, b)
		case 3:
			in.Arch, ok = str(typ, b)
		case 4:
			in.Version, ok = str(typ, b)
		case 5:
			in.PrivateIps, ok = s.appendStr(in.PrivateIps, typ, b)
		case 6:
			in.GatewayIp, ok = str(typ, b)
		case 7:
			in.GatewayMac, ok = str(typ, b)
		case 8:
			in.ConsoleUsers, ok = s.appendStr(in.ConsoleUsers, typ, b)
		}
		return ok
	})
}

func (s *listSlabs) peerStats(b []byte, st *pb.PeerStats) bool {
	return eachField(b, func(num protowire.Number, typ protowire.Type, b *[]byte) bool {
		var ok bool
		var u uint64
		switch num {
		case 1:
			if ok = typ == protowire.Fixed64Type; ok {
				var n int
				u, n = protowire.ConsumeFixed64(*b)
				ok = n >= 0
				*b = (*b)[max(n, 0):]
				st.Load1 = math.Float64frombits(u)
			}
		case 2:
			u, ok = varint(typ, b)
			st.Cpus = uint32(u)
		case 3:
			st.DiskUsedBytes, ok = varint(typ, b)
		case 4:
			st.DiskTotalBytes, ok = varint(typ, b)
		case 5:
			st.UptimeSeconds, ok = varint(typ, b)
		case 6:
			st.ConsoleUsers, ok = s.appendStr(st.ConsoleUsers, typ, b)
		case 7:
			u, ok = varint(typ, b)
			st.TakenUnix = int64(u)
		}
		return ok
	})
}

// appendStr appends a repeated string's next value to field, a full
// slice of the slabs' strings (an append by a caller copies it out).
func (s *listSlabs) appendStr(field []string, typ protowire.Type, b *[]byte) ([]string, bool) {
	v, ok := str(typ, b)
	if !ok {
		return nil, false
	}
	if len(field) > 0 && cap(field) == len(field) && len(s.strs) > 0 && unsafe.SliceData(field) == unsafe.SliceData(s.strs[len(s.strs)-len(field):]) {
		// field ends the slab: grow it in place.
		s.strs = append(s.strs, v)
		return s.strs[len(s.strs)-len(field)-1 : len(s.strs) : len(s.strs)], true
	}
	if len(field) > 0 {
		return append(field, v), true // not contiguous (interleaved with another field): its own array
	}
	s.strs = append(s.strs, v)
	return s.strs[len(s.strs)-1 : len(s.strs) : len(s.strs)], true
}

// eachField calls read with each field's number and type and the bytes
// after its tag, which read consumes; a bad tag or a false read stops it.
func eachField(b []byte, read func(num protowire.Number, typ protowire.Type, b *[]byte) bool) bool {
	for len(b) > 0 {
		num, typ, k := protowire.ConsumeTag(b)
		if k < 0 {
			return false
		}
		b = b[k:]
		if !read(num, typ, &b) {
			return false
		}
	}
	return true
}

func message(typ protowire.Type, b *[]byte) ([]byte, bool) {
	return bytesField(typ, b)
}

func bytesField(typ protowire.Type, b *[]byte) ([]byte, bool) {
	if typ != protowire.BytesType {
		return nil, false
	}
	v, n := protowire.ConsumeBytes(*b)
	if n < 0 {
		return nil, false
	}
	*b = (*b)[n:]
	return alias(v), true
}

func str(typ protowire.Type, b *[]byte) (string, bool) {
	v, ok := bytesField(typ, b)
	if !ok || !utf8.Valid(v) {
		return "", false
	}
	if len(v) == 0 {
		return "", true
	}
	return unsafe.String(unsafe.SliceData(v), len(v)), true
}

func varint(typ protowire.Type, b *[]byte) (uint64, bool) {
	if typ != protowire.VarintType {
		return 0, false
	}
	v, n := protowire.ConsumeVarint(*b)
	if n < 0 {
		return 0, false
	}
	*b = (*b)[n:]
	return v, true
}

// alias is v with no room past its end: an append copies it out instead
// of writing over the reply's next bytes.
func alias(v []byte) []byte { return v[:len(v):len(v)] }
