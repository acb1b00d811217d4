package relay

import (
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/jumpmesh/jumpmesh/mesh/channel"
)

// The splice service carries relayed bulk connections (mesh/channel's
// bulkrelay.go): a member asks for a one-time slot on
// channel.RelayBulkProtocol over its authenticated libp2p connection; both
// ends of the forward then open plain TCP connections to the splice
// listener and send the slot's token and their side; the relay pairs the
// two and hands them to a splice loop (spliceloop.go), which copies with
// splice(2): no copy through the relay's memory and no cryptography on
// the relay. What it copies is the bulk connection's
// ticket, hello and AES-GCM frames, sealed end to end with keys the relay
// never sees. The numbers below are its bounds.
var (
	// spliceSlotTTL is how long a slot waits for its two sides: the
	// peer's comes at once, the console's a round trip after the offer.
	spliceSlotTTL = 10 * time.Second
	// spliceHelloTimeout is how long the listener waits for a
	// connection's slot token.
	spliceHelloTimeout = 5 * time.Second
)

const (
	// spliceSlotsPerMember and spliceSlotsTotal bound the slots not yet
	// paired (a forward being set up holds one for a round trip).
	spliceSlotsPerMember = 16
	spliceSlotsTotal     = 1024
	// spliceHandshakes bounds the connections the listener reads a slot
	// token from at once: a stranger holding connections open gets the
	// rest closed.
	spliceHandshakes = 256
	// spliceAnswerTimeout bounds a slot request's stream.
	spliceAnswerTimeout = 5 * time.Second
)

// Splice refusal reasons, the values of the splice refusals counter's
// "reason" label.
const (
	SpliceRefusedNotMember  = "not_member"     // a slot asked by a stranger
	SpliceRefusedMemberBusy = "member_busy"    // a member at its bound of slots and splices
	SpliceRefusedRelayBusy  = "relay_busy"     // the relay at its bound
	SpliceRefusedHandshakes = "handshakes"     // too many connections sending a token at once
	SpliceRefusedBadHello   = "bad_hello"      // no token within the timeout, or not a side
	SpliceRefusedNoSlot     = "no_slot"        // a token of no live slot: unknown, used or expired
	SpliceRefusedSameSide   = "same_side"      // the side the slot already holds
	spliceCutData           = "data_limit"     // Resources.CircuitData reached
	spliceCutDuration       = "duration_limit" // Resources.CircuitDuration reached
)

// splicer is the relay's splice listener and its slots.
type splicer struct {
	ln       *net.TCPListener
	port     int
	acl      *ACL
	log      *slog.Logger
	data     int64         // Resources.CircuitData: 0 unlimited
	duration time.Duration // Resources.CircuitDuration: 0 unlimited
	// maxActive and maxActivePerMember bound slots and running splices
	// together (Resources.MaxCircuits and MaxCircuitsPerPeer).
	maxActive, maxActivePerMember int

	refused *prometheus.CounterVec
	cuts    *prometheus.CounterVec
	splices prometheus.Counter
	bytes   prometheus.Counter
	// wakeups and reads are the splice loops' wake-ups that read and
	// their reads that moved bytes: reads ÷ wakeups is the frames a
	// wake-up serves.
	wakeups, reads prometheus.Counter

	handshakes chan struct{}
	wg         sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	slots   map[[channel.SpliceSlotSize]byte]*spliceSlot
	pending map[peer.ID]int // slots not paired, by the member that asked
	active  map[peer.ID]int // splices running, by the member that asked
	nActive int
	// conns are the connections the splicer holds (waiting in a slot or
	// spliced by io.Copy) and the splices its loops serve, each with the
	// member whose slot it came by.
	conns map[io.Closer]peer.ID
	// loops serve the running splices (spliceloop_linux.go), started with
	// the first; empty where they could not be.
	loops []*spliceLoop
}

type spliceSlot struct {
	owner   peer.ID
	waiting *net.TCPConn // the first side, until the second comes
	side    byte
	timer   *time.Timer
}

// spliceTap, when set (tests only), sees every byte the splicer copies;
// the copy then goes through the relay's memory instead of splice(2).
var spliceTap func([]byte)

// spliceGoCopy, when set (benchmarks only), makes splices copy with
// io.Copy in two goroutines each, as before the splice loops, to compare.
var spliceGoCopy bool

// spliceMisPair, when set (tests only), makes the relay lie: a second side
// is paired with the first side waiting in another slot, if any.
var spliceMisPair bool

func newSplicer(addr string, acl *ACL, res Resources, reg prometheus.Registerer, log *slog.Logger) (*splicer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &splicer{
		ln:   ln.(*net.TCPListener),
		port: ln.Addr().(*net.TCPAddr).Port,
		acl:  acl, log: log,
		data: res.CircuitData, duration: res.CircuitDuration,
		maxActive: res.MaxCircuits, maxActivePerMember: res.MaxCircuitsPerPeer,
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "jumpmesh", Subsystem: "relay", Name: "splice_refusals_total",
			Help: "Splice slots and splice connections refused, by reason."}, []string{"reason"}),
		cuts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "jumpmesh", Subsystem: "relay", Name: "splice_cuts_total",
			Help: "Splices cut at a circuit limit, by limit."}, []string{"limit"}),
		splices: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "jumpmesh", Subsystem: "relay", Name: "splices_total",
			Help: "Bulk connections spliced (both sides paired)."}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "jumpmesh", Subsystem: "relay", Name: "spliced_bytes_total",
			Help: "Bytes spliced, both directions of every splice."}),
		wakeups: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "jumpmesh", Subsystem: "relay", Name: "splice_loop_wakeups_total",
			Help: "Times a splice loop woke up and read from a spliced socket."}),
		reads: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "jumpmesh", Subsystem: "relay", Name: "splice_loop_reads_total",
			Help: "Reads from spliced sockets that moved bytes (per wake-up: the frames it served)."}),
		handshakes: make(chan struct{}, spliceHandshakes),
		slots:      map[[channel.SpliceSlotSize]byte]*spliceSlot{},
		pending:    map[peer.ID]int{},
		active:     map[peer.ID]int{},
		conns:      map[io.Closer]peer.ID{},
	}
	for _, r := range []string{SpliceRefusedNotMember, SpliceRefusedMemberBusy, SpliceRefusedRelayBusy, SpliceRefusedHandshakes,
		SpliceRefusedBadHello, SpliceRefusedNoSlot, SpliceRefusedSameSide} {
		s.refused.WithLabelValues(r)
	}
	s.cuts.WithLabelValues(spliceCutData)
	s.cuts.WithLabelValues(spliceCutDuration)
	reg.MustRegister(s.refused, s.cuts, s.splices, s.bytes, s.wakeups, s.reads)
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// handleSlot answers a member's request for a slot on
// channel.RelayBulkProtocol.
func (s *splicer) handleSlot(st network.Stream) {
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(spliceAnswerTimeout))
	status, slot := s.grant(st.Conn().RemotePeer())
	if err := channel.WriteSpliceSlot(st, status, slot); err != nil {
		_ = st.Reset()
	}
}

// grant makes a slot for member owner, within the bounds. An unknown
// party waits for an early refresh first, as a reservation does (ACL):
// it may have enrolled a moment ago.
func (s *splicer) grant(owner peer.ID) (byte, channel.SpliceSlot) {
	if !s.acl.IsMember(owner) {
		s.acl.awaitRefresh()
	}
	if !s.acl.IsMember(owner) {
		s.refused.WithLabelValues(SpliceRefusedNotMember).Inc()
		return channel.SpliceNotMember, channel.SpliceSlot{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed || len(s.slots) >= spliceSlotsTotal || len(s.slots)+s.nActive >= s.maxActive:
		s.refused.WithLabelValues(SpliceRefusedRelayBusy).Inc()
		return channel.SpliceRelayBusy, channel.SpliceSlot{}
	case s.pending[owner] >= spliceSlotsPerMember || s.pending[owner]+s.active[owner] >= s.maxActivePerMember:
		s.refused.WithLabelValues(SpliceRefusedMemberBusy).Inc()
		return channel.SpliceMemberBusy, channel.SpliceSlot{}
	}
	slot := channel.NewSpliceSlot(s.port)
	sl := &spliceSlot{owner: owner}
	sl.timer = time.AfterFunc(spliceSlotTTL, func() { s.expire(slot.Token, sl) })
	s.slots[slot.Token] = sl
	s.pending[owner]++
	return channel.SpliceSlotGranted, slot
}

// expire drops slot sl (under token t) if it is still unpaired, closing
// the side waiting in it.
func (s *splicer) expire(t [channel.SpliceSlotSize]byte, sl *spliceSlot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.slots[t] != sl {
		return
	}
	s.dropSlotLocked(t, sl)
}

func (s *splicer) dropSlotLocked(t [channel.SpliceSlotSize]byte, sl *spliceSlot) {
	delete(s.slots, t)
	sl.timer.Stop()
	s.decLocked(s.pending, sl.owner)
	if sl.waiting != nil {
		delete(s.conns, sl.waiting)
		_ = sl.waiting.Close()
	}
}

func (s *splicer) decLocked(m map[peer.ID]int, p peer.ID) {
	if m[p]--; m[p] <= 0 {
		delete(m, p)
	}
}

func (s *splicer) serve() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.AcceptTCP()
		if err != nil {
			return
		}
		select {
		case s.handshakes <- struct{}{}:
		default:
			s.refused.WithLabelValues(SpliceRefusedHandshakes).Inc()
			_ = conn.Close()
			continue
		}
		s.wg.Add(1)
		go s.handshake(conn)
	}
}

// handshake reads a connection's slot token and side and puts it in its
// slot, or pairs it with the side waiting there and splices the two.
func (s *splicer) handshake(conn *net.TCPConn) {
	defer s.wg.Done()
	var hello [channel.SpliceSlotSize + 1]byte
	_ = conn.SetReadDeadline(time.Now().Add(spliceHelloTimeout))
	_, err := io.ReadFull(conn, hello[:])
	_ = conn.SetReadDeadline(time.Time{})
	<-s.handshakes
	side := hello[channel.SpliceSlotSize]
	if err != nil || (side != channel.SpliceOfferer && side != channel.SpliceDialer) {
		s.refused.WithLabelValues(SpliceRefusedBadHello).Inc()
		_ = conn.Close()
		return
	}
	var t [channel.SpliceSlotSize]byte
	copy(t[:], hello[:])
	s.mu.Lock()
	sl := s.slots[t]
	switch {
	case s.closed || sl == nil:
		s.mu.Unlock()
		s.refused.WithLabelValues(SpliceRefusedNoSlot).Inc()
		_ = conn.Close()
		return
	case sl.waiting == nil:
		sl.waiting, sl.side = conn, side
		s.conns[conn] = sl.owner
		s.mu.Unlock()
		return
	case sl.side == side:
		s.mu.Unlock()
		s.refused.WithLabelValues(SpliceRefusedSameSide).Inc()
		_ = conn.Close()
		return
	}
	if spliceMisPair {
		for t2, other := range s.slots {
			if other != sl && other.waiting != nil && other.side != side {
				t, sl = t2, other
				break
			}
		}
	}
	first := sl.waiting
	sl.waiting = nil // paired: dropSlotLocked leaves it open
	s.dropSlotLocked(t, sl)
	s.active[sl.owner]++
	s.nActive++
	if spliceTap == nil && !spliceGoCopy {
		if sp, ok := s.startRaw(sl.owner, first, conn); ok {
			delete(s.conns, first)
			s.conns[sp] = sl.owner
			s.mu.Unlock()
			s.splices.Inc()
			return
		}
	}
	s.conns[conn] = sl.owner
	s.mu.Unlock()
	s.splices.Inc()
	s.splice(sl.owner, first, conn)
}

// ended forgets splice sp of member owner, which its loop tore down.
func (s *splicer) ended(sp *rawSplice, owner peer.ID) {
	s.mu.Lock()
	delete(s.conns, sp)
	s.decLocked(s.active, owner)
	s.nActive--
	s.mu.Unlock()
	s.wg.Done()
}

// splice copies between a and b with io.Copy, each direction until its
// end (passed on as a half-close) or the data limit, for at most the
// duration limit: the path of a tapped splice (tests) and of a relay whose
// splice loops could not start.
func (s *splicer) splice(owner peer.ID, a, b *net.TCPConn) {
	cut := func(limit string) {
		s.cuts.WithLabelValues(limit).Inc()
		_ = a.Close()
		_ = b.Close()
	}
	if s.duration > 0 {
		t := time.AfterFunc(s.duration, func() { cut(spliceCutDuration) })
		defer t.Stop()
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.pipe(b, a, cut)
	}()
	s.pipe(a, b, cut)
	wg.Wait()
	_ = a.Close()
	_ = b.Close()
	s.mu.Lock()
	delete(s.conns, a)
	delete(s.conns, b)
	s.decLocked(s.active, owner)
	s.nActive--
	s.mu.Unlock()
}

// pipe copies src to dst. With no tap, io.Copy between two TCP
// connections is splice(2) on Linux (also through the data limit's
// io.LimitedReader).
func (s *splicer) pipe(dst, src *net.TCPConn, cut func(string)) {
	var r io.Reader = src
	var lr *io.LimitedReader
	if s.data > 0 {
		lr = &io.LimitedReader{R: src, N: s.data}
		r = lr
	}
	var w io.Writer = dst
	if tap := spliceTap; tap != nil {
		w = tapWriter{w: dst, tap: tap}
	}
	n, err := io.Copy(w, r)
	s.bytes.Add(float64(n))
	switch {
	case lr != nil && lr.N == 0:
		cut(spliceCutData)
	case err != nil:
		_ = src.Close()
		_ = dst.Close()
	default:
		_ = dst.CloseWrite()
	}
}

type tapWriter struct {
	w   io.Writer
	tap func([]byte)
}

func (t tapWriter) Write(p []byte) (int, error) {
	t.tap(p)
	return t.w.Write(p)
}

// evict closes the slots and splices of members no longer in the ACL.
func (s *splicer) evict() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for t, sl := range s.slots {
		if !s.acl.IsMember(sl.owner) {
			s.dropSlotLocked(t, sl)
		}
	}
	for c, owner := range s.conns {
		if !s.acl.IsMember(owner) {
			_ = c.Close() // its splice ends and forgets it
		}
	}
}

// close stops the listener, closes every slot and splice and waits for
// their goroutines.
func (s *splicer) close() error {
	err := s.ln.Close()
	s.mu.Lock()
	s.closed = true
	for t, sl := range s.slots {
		s.dropSlotLocked(t, sl)
	}
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.mu.Lock()
	loops := s.loops
	s.mu.Unlock()
	for _, l := range loops {
		l.stop()
	}
	return err
}

// counts are the splicer's slots, connections waiting in them and
// splices running (tests).
func (s *splicer) counts() (slots, waiting, active int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sl := range s.slots {
		if sl.waiting != nil {
			waiting++
		}
	}
	return len(s.slots), waiting, s.nActive
}
