package channel

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// A relayed bulk connection: when a session is relayed, a bulk connection
// (bulk.go) can still have a TCP connection of its own, spliced by the
// session's relay (relay/splice.go) instead of going through the circuit
// inside the relay's libp2p connections. The peer asks the relay for a
// one-time splice slot on RelayBulkProtocol, opens a plain TCP connection
// to the relay's splice port and sends the slot and SpliceOfferer; it puts
// the relay and the slot in its BulkOffer. The console opens its own TCP
// connection to the same port and sends the slot and SpliceDialer. The
// relay pairs the two and copies bytes between them; the bulk hello, the
// ticket and the sealed frames then go end to end through it exactly as on
// a direct bulk connection. The relay sees the slot, the ticket and
// ciphertext only; whoever sees the slot on the wire and races the console
// to the relay gets paired with the peer but cannot make the hello, which
// needs the offer's secret (sent on the end-to-end channel only).

// RelayBulkProtocol is the libp2p protocol on which a site member asks a
// relay for a splice slot. The member opens a stream and writes nothing;
// the relay answers a SpliceSlot and closes.
const RelayBulkProtocol = "/jumpmesh/relay-bulk/1.0.0"

// SpliceSlotSize is the size of a splice slot's token.
const SpliceSlotSize = 16

// The side byte each end sends after the slot.
const (
	SpliceOfferer byte = 'p' // the peer, which made the offer
	SpliceDialer  byte = 'c' // the console
)

// Splice slot answers, the first byte of the relay's answer.
const (
	SpliceSlotGranted   byte = 0
	SpliceNotMember     byte = 1 // the asker is not a member of the site
	SpliceMemberBusy    byte = 2 // the asker holds as many slots and splices as it may
	SpliceRelayBusy     byte = 3 // the relay holds as many as it may
	spliceSlotAnswerLen      = 1 + SpliceSlotSize + 2
)

// ErrSpliceRefused is a relay's refusal of a splice slot.
var ErrSpliceRefused = errors.New("the relay refused a splice slot")

// SpliceSlot is a relay's answer: a token and the port of its splice
// listener, on the address the asker reached the relay at.
type SpliceSlot struct {
	Token [SpliceSlotSize]byte
	Port  int
}

// NewSpliceSlot draws a fresh token for port.
func NewSpliceSlot(port int) SpliceSlot {
	s := SpliceSlot{Port: port}
	_, _ = rand.Read(s.Token[:]) // crypto/rand.Read does not fail
	return s
}

// WriteSpliceSlot writes a relay's answer: status, and the slot when it is
// SpliceSlotGranted.
func WriteSpliceSlot(w io.Writer, status byte, s SpliceSlot) error {
	b := make([]byte, spliceSlotAnswerLen)
	b[0] = status
	if status == SpliceSlotGranted {
		copy(b[1:], s.Token[:])
		binary.BigEndian.PutUint16(b[1+SpliceSlotSize:], uint16(s.Port))
	}
	_, err := w.Write(b)
	return err
}

// ReadSpliceSlot reads a relay's answer; a refusal is ErrSpliceRefused
// with the reason.
func ReadSpliceSlot(r io.Reader) (SpliceSlot, error) {
	var b [spliceSlotAnswerLen]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return SpliceSlot{}, fmt.Errorf("reading the relay's splice slot: %w", err)
	}
	switch b[0] {
	case SpliceSlotGranted:
	case SpliceNotMember:
		return SpliceSlot{}, fmt.Errorf("%w: not a member of the site", ErrSpliceRefused)
	case SpliceMemberBusy:
		return SpliceSlot{}, fmt.Errorf("%w: this member holds as many slots as it may", ErrSpliceRefused)
	case SpliceRelayBusy:
		return SpliceSlot{}, fmt.Errorf("%w: the relay holds as many slots as it may", ErrSpliceRefused)
	default:
		return SpliceSlot{}, fmt.Errorf("%w: answer %d", ErrSpliceRefused, b[0])
	}
	s := SpliceSlot{Port: int(binary.BigEndian.Uint16(b[1+SpliceSlotSize:]))}
	copy(s.Token[:], b[1:])
	if s.Port == 0 {
		return SpliceSlot{}, fmt.Errorf("%w: no port", ErrSpliceRefused)
	}
	return s, nil
}

// DialSplice opens a TCP connection to a relay's splice listener at addr
// and sends the slot's token and side: what follows on it reaches the
// other side once the relay paired them.
func DialSplice(ctx context.Context, addr string, token [SpliceSlotSize]byte, side byte, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	hello := append(token[:], side)
	if _, err := conn.Write(hello); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return conn, nil
}

// BulkRelay is the relayed part of a bulk offer: the relay's peer ID and
// the slot the peer holds on it.
type BulkRelay struct {
	Relay string
	Slot  SpliceSlot
}

// SendBulkRelayOffer is SendBulkOffer for a relayed session: the console
// reaches the bulk connection through relay r's splice.
func (c *Channel) SendBulkRelayOffer(o BulkOffer, r BulkRelay) error {
	return c.WriteMsg(&pb.ChannelReady{Bulk: bulkRelayOfferPB(o, r)})
}

// ReadStatusBulk is ReadStatusOffer that also understands a relayed offer:
// with one, addr is nil and relay says where to splice.
func (c *Channel) ReadStatusBulk() (*BulkOffer, *net.TCPAddr, *BulkRelay, error) {
	var st pb.ChannelReady
	if err := c.ReadMsg(&st); err != nil {
		return nil, nil, nil, catalog.Errorf(catalog.CodeSessionInternal, "(waiting for the peer's status: %w)", err)
	}
	if err := catalog.ErrorFromPB(st.GetError()); err != nil {
		return nil, nil, nil, err
	}
	o, addr, r := bulkOfferFromPB(st.GetBulk())
	return o, addr, r, nil
}

// bulkOfferFromPB reads an offer: nil when b is not a well-formed one;
// with a relayed offer, addr is nil and relay says where to splice (nil
// too when the relayed part is malformed: the console declines it).
func bulkOfferFromPB(b *pb.BulkOffer) (*BulkOffer, *net.TCPAddr, *BulkRelay) {
	ip := net.ParseIP(b.GetHost())
	if b == nil || ip == nil || len(b.GetTicket()) != BulkTicketSize || len(b.GetSecret()) != BulkSecretSize || b.GetPort() == 0 || b.GetPort() > 65535 {
		return nil, nil, nil
	}
	var o BulkOffer
	copy(o.Ticket[:], b.GetTicket())
	copy(o.Secret[:], b.GetSecret())
	if b.GetRelay() == "" && len(b.GetRelaySlot()) == 0 {
		return &o, &net.TCPAddr{IP: ip, Port: int(b.GetPort())}, nil
	}
	r := &BulkRelay{Relay: b.GetRelay(), Slot: SpliceSlot{Port: int(b.GetPort())}}
	if len(b.GetRelaySlot()) != SpliceSlotSize || r.Relay == "" {
		// A malformed relayed offer is still an offer: the console
		// declines it, so the peer is not left waiting for the choice.
		return &o, nil, nil
	}
	copy(r.Slot.Token[:], b.GetRelaySlot())
	return &o, nil, r
}

// bulkRelayOfferPB is the relayed offer o through r as sent.
func bulkRelayOfferPB(o BulkOffer, r BulkRelay) *pb.BulkOffer {
	return &pb.BulkOffer{Ticket: o.Ticket[:], Secret: o.Secret[:],
		Port: uint32(r.Slot.Port), Host: net.IPv6unspecified.String(), RelaySlot: r.Slot.Token[:], Relay: r.Relay}
}

// RelayHop is the relay a relayed connection goes through and the address
// this side reached it at; ok is false for a connection that is not
// relayed or whose relay hop is not on an IP address.
func RelayHop(c network.Conn) (relay peer.ID, ip net.IP, ok bool) {
	a := c.RemoteMultiaddr()
	// <relay transport>/p2p/<relay>/p2p-circuit[/p2p/<other end>]: the
	// last /p2p before /p2p-circuit is the relay.
	for _, comp := range a {
		if comp.Protocol().Code == ma.P_CIRCUIT {
			ip, err := manet.ToIP(a)
			return relay, ip, err == nil && relay != ""
		}
		if comp.Protocol().Code == ma.P_P2P {
			id, err := peer.Decode(comp.Value())
			if err != nil {
				return "", nil, false
			}
			relay = id
		}
	}
	return "", nil, false
}

// SpliceRetryAfter is how long a side skips a relay's splice after it
// could not reach it (SpliceMemory).
const SpliceRetryAfter = 5 * time.Minute

// SpliceMemory remembers the relays whose splice a side could not reach (a
// relay without the service, a firewall that drops the splice port), so
// that the forwards after a failure go on their channel at once instead of
// each waiting for a dial's timeout; after SpliceRetryAfter the relay is
// tried again. The zero value is ready.
type SpliceMemory struct {
	mu     sync.Mutex
	failed map[string]time.Time
	now    func() time.Time // tests
}

func (m *SpliceMemory) clock() time.Time {
	if m.now != nil {
		return m.now()
	}
	return time.Now()
}

// Skip reports whether relay failed less than SpliceRetryAfter ago.
func (m *SpliceMemory) Skip(relay string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	at, ok := m.failed[relay]
	if ok && m.clock().Sub(at) >= SpliceRetryAfter {
		delete(m.failed, relay)
		return false
	}
	return ok
}

// Failed records that relay's splice could not be reached now.
func (m *SpliceMemory) Failed(relay string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failed == nil {
		m.failed = map[string]time.Time{}
	}
	m.failed[relay] = m.clock()
}
