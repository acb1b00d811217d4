package jumpoint

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/tunnel"
)

// Every agentless tunnel (rule 4) is audited: who reached which target,
// when, and how many bytes each way. The jumpoint is the only party that
// sees these tunnels end, so it counts them and reports each finished one
// to the coordinator with its next ACL refresh, which writes it to the
// audit log (`jumpmesh audit --kind tunnel`).
//
// The counting taps the tunnel protocol's streams without changing the
// tunnel server (mesh/tunnel): the server is given the host through
// tappingHost, whose stream handler wraps each tunnel stream. The tap
// reads the open as the server reads it and the reply as the server
// writes it (an empty reply is the server's yes), and counts the bytes
// after them: what the technician sent to the target (in) and back (out).

// Bounds of the tunnel records waiting to be reported.
const (
	// MaxTunnelRecords is how many finished tunnels the jumpoint keeps
	// until the coordinator takes them (about 200 bytes each); beyond it
	// the oldest are dropped and the drop is reported.
	MaxTunnelRecords = 4096
	// maxReport is how many one refresh carries (the coordinator's
	// MaxTunnelReports).
	maxReport = 256
)

// tunnelLog holds the finished agentless tunnels not reported yet.
type tunnelLog struct {
	mu      sync.Mutex
	seq     uint64 // of the last record added
	recs    []tunnelEntry
	dropped uint64 // dropped since the last report the coordinator took
}

type tunnelEntry struct {
	seq uint64
	rec *pb.TunnelRecord
}

func (l *tunnelLog) add(r *pb.TunnelRecord) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	if len(l.recs) >= MaxTunnelRecords {
		l.recs = l.recs[1:]
		l.dropped++
	}
	l.recs = append(l.recs, tunnelEntry{seq: l.seq, rec: r})
}

// pending returns the oldest records (at most maxReport), the drops to
// report, and a mark for done.
func (l *tunnelLog) pending() (recs []*pb.TunnelRecord, dropped uint64, mark uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.recs[:min(len(l.recs), maxReport)] {
		recs = append(recs, e.rec)
		mark = e.seq
	}
	return recs, l.dropped, mark
}

// done forgets what a refresh the coordinator answered carried: the
// records up to mark and dropped drops.
func (l *tunnelLog) done(dropped, mark uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	i := 0
	for i < len(l.recs) && l.recs[i].seq <= mark {
		i++
	}
	l.recs = l.recs[i:]
	l.dropped -= min(dropped, l.dropped)
}

// len is the number of records waiting.
func (l *tunnelLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.recs)
}

// tappingHost is the jumpoint's host as the tunnel server sees it: its
// tunnel handler runs on tapped streams.
type tappingHost struct {
	host.Host
	log   *tunnelLog
	clock func() time.Time
}

func (h tappingHost) SetStreamHandler(pid protocol.ID, handler network.StreamHandler) {
	if pid != tunnel.Protocol {
		h.Host.SetStreamHandler(pid, handler)
		return
	}
	h.Host.SetStreamHandler(pid, func(st network.Stream) {
		t := &tappedStream{Stream: st}
		handler(t)
		if r := t.record(h.clock()); r != nil {
			h.log.add(r)
		}
	})
}

// tappedStream is a tunnel stream that notes the open and the reply and
// counts the bytes after them. The server reads the open and writes the
// reply in its handler's goroutine, before the splice's goroutines start.
type tappedStream struct {
	network.Stream
	openBuf  []byte
	open     *pb.TunnelOpen // nil until read whole
	replyBuf []byte
	replied  bool
	accepted time.Time // when the server said yes; zero: it did not
	in, out  atomic.Uint64
}

func (t *tappedStream) Read(p []byte) (int, error) {
	n, err := t.Stream.Read(p)
	if t.open == nil && n > 0 && len(t.openBuf) <= tunnel.MaxOpen+binary.MaxVarintLen64 {
		t.openBuf = append(t.openBuf, p[:n]...)
		size, hdr := binary.Uvarint(t.openBuf)
		if hdr > 0 && uint64(len(t.openBuf)-hdr) >= size {
			end := hdr + int(size)
			open := new(pb.TunnelOpen)
			if proto.Unmarshal(t.openBuf[hdr:end], open) == nil {
				t.open = open
			} else {
				t.open = &pb.TunnelOpen{}
			}
			t.in.Add(uint64(len(t.openBuf) - end))
			t.openBuf = nil
		}
		return n, err
	}
	t.in.Add(uint64(n))
	return n, err
}

func (t *tappedStream) Write(p []byte) (int, error) {
	n, err := t.Stream.Write(p)
	if !t.replied && n > 0 {
		t.replyBuf = append(t.replyBuf, p[:n]...)
		size, hdr := binary.Uvarint(t.replyBuf)
		if hdr > 0 && uint64(len(t.replyBuf)-hdr) >= size {
			t.replied = true
			if size == 0 { // an empty TunnelReply: no error, the tunnel is open
				t.accepted = time.Now()
			}
			t.out.Add(uint64(len(t.replyBuf) - hdr - int(size)))
			t.replyBuf = nil
		} else if hdr < 0 || len(t.replyBuf) > tunnel.MaxOpen {
			t.replied, t.replyBuf = true, nil
		}
		return n, err
	}
	t.out.Add(uint64(n))
	return n, err
}

// record is the tunnel's audit record, or nil when it was not an
// agentless tunnel the server opened.
func (t *tappedStream) record(now time.Time) *pb.TunnelRecord {
	if t.accepted.IsZero() || t.open == nil || !isTargetGrant(t.open.GetGrant()) {
		return nil
	}
	body, _ := grant.Parse(t.open.GetGrant()) // isTargetGrant parsed it
	target := t.open.GetTarget()
	if c, ok := canonical(target); ok {
		target = c
	}
	// accepted is on the wall clock (monotonic); the record's times on
	// the jumpoint's clock.
	started := now.Add(-time.Since(t.accepted))
	return &pb.TunnelRecord{Technician: []byte(t.Conn().RemotePeer()), User: body.GetUser(), Target: target,
		GrantNonce: body.GetNonce(), StartedUnixNano: started.UnixNano(), EndedUnixNano: now.UnixNano(),
		BytesIn: t.in.Load(), BytesOut: t.out.Load()}
}
