package channel

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// A bulk connection carries one forward's bytes on a TCP connection of its
// own instead of a stream of the session's muxer (issue 17): frames of up
// to BulkFrame bytes, each sealed with AES-128-GCM straight from the
// reader's buffer and opened straight into the writer's, with no
// multiplexer and no TLS record layer between. It is the wire half of the
// design in docs/performance.md ("Where a forwarded byte's CPU goes"); the
// offer that sets it up travels on the forward's channel and is not wired
// into console and peer yet.
//
// Trust: the offer (ticket and secret) is made by the peer and sent to the
// console over the channel, which is end-to-end encrypted and
// authenticated between the two; whoever carries the TCP connection (a
// relay, a jumpoint, the network) sees the ticket and ciphertext only. The
// console proves it holds the secret in its first frame before the peer
// takes the ticket (once, until it expires); the peer proves it in its
// answer. Each direction has its own key derived from the secret, and the
// end of a direction is a sealed empty frame, so bytes cannot be altered,
// replayed, reordered, reflected or cut short without the reader seeing an
// error.
//
// Wire: the console sends the 16-byte ticket, then frames both ways. A
// frame is a 4-byte big-endian length n and n bytes of ciphertext with its
// 16-byte tag; the nonce is the frame's sequence number in its direction
// (0 for the hello frames), the length prefix is the additional data. The
// first frame each way is a hello: bulkHelloConsole, then bulkHelloPeer.

// BulkFrame is the most plaintext one frame carries: the splice buffer, so
// that a splice's read becomes one frame and one write.
const BulkFrame = SpliceBuffer

// BulkTicketSize and BulkSecretSize are the sizes of an offer's parts.
const (
	BulkTicketSize = 16
	BulkSecretSize = 32
)

// BulkHandshakeTimeout bounds each side's hello exchange.
const BulkHandshakeTimeout = 10 * time.Second

const (
	bulkHeader        = 4
	bulkTag           = 16
	bulkHelloConsole  = "jumpmesh bulk 1 console"
	bulkHelloPeer     = "jumpmesh bulk 1 peer"
	bulkInfoToPeer    = "jumpmesh bulk 1 console to peer"
	bulkInfoToConsole = "jumpmesh bulk 1 peer to console"
)

// ErrBulkRefused is what a bulk connection's acceptor returns for a
// connection it did not take: no pending offer has its ticket, or its
// hello does not open under that offer's secret.
var ErrBulkRefused = errors.New("bulk connection refused")

// BulkOffer is what a peer hands a console to open one bulk connection.
type BulkOffer struct {
	Ticket [BulkTicketSize]byte
	Secret [BulkSecretSize]byte
}

// NewBulkOffer draws a fresh ticket and secret.
func NewBulkOffer() BulkOffer {
	var o BulkOffer
	_, _ = rand.Read(o.Ticket[:]) // crypto/rand.Read does not fail
	_, _ = rand.Read(o.Secret[:])
	return o
}

// keys derives the two directions' ciphers.
func (o BulkOffer) keys() (toPeer, toConsole cipher.AEAD, err error) {
	mk := func(info string) (cipher.AEAD, error) {
		k, err := hkdf.Key(sha256.New, o.Secret[:], o.Ticket[:], info, 16)
		if err != nil {
			return nil, err
		}
		b, err := aes.NewCipher(k)
		if err != nil {
			return nil, err
		}
		return cipher.NewGCM(b)
	}
	if toPeer, err = mk(bulkInfoToPeer); err != nil {
		return nil, nil, err
	}
	toConsole, err = mk(bulkInfoToConsole)
	return toPeer, toConsole, err
}

// BulkOffers are a peer's pending offers: each is taken at most once, by
// the first connection whose hello opens under it, before it expires.
type BulkOffers struct {
	mu      sync.Mutex
	pending map[[BulkTicketSize]byte]pendingOffer
	now     func() time.Time
}

type pendingOffer struct {
	offer   BulkOffer
	expires time.Time
}

// Add makes o acceptable until ttl has passed.
func (s *BulkOffers) Add(o BulkOffer, ttl time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending == nil {
		s.pending = map[[BulkTicketSize]byte]pendingOffer{}
	}
	now := s.clock()
	for t, p := range s.pending { // drop the expired: the map stays as small as the live offers
		if now.After(p.expires) {
			delete(s.pending, t)
		}
	}
	s.pending[o.Ticket] = pendingOffer{offer: o, expires: now.Add(ttl)}
}

// Withdraw drops the offer with ticket t, taken or not.
func (s *BulkOffers) Withdraw(t [BulkTicketSize]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.pending, t)
}

// Len is the number of offers not taken (expired ones included until the
// next Add).
func (s *BulkOffers) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

func (s *BulkOffers) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

func (s *BulkOffers) lookup(t [BulkTicketSize]byte) (BulkOffer, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pending[t]
	if !ok || s.clock().After(p.expires) {
		return BulkOffer{}, false
	}
	return p.offer, true
}

// take removes the offer o if it is still pending, reporting whether this
// caller got it.
func (s *BulkOffers) take(o BulkOffer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pending[o.Ticket]
	if !ok || subtle.ConstantTimeCompare(p.offer.Secret[:], o.Secret[:]) != 1 {
		return false
	}
	delete(s.pending, o.Ticket)
	return true
}

// BulkConn is one end of a bulk connection: Read, Write and CloseWrite as
// on a TCP connection, every byte sealed. Reads belong to one goroutine,
// writes to another.
type BulkConn struct {
	conn net.Conn
	// Ticket is the offer's ticket: the acceptor matches the connection to
	// the forward it offered with it.
	Ticket [BulkTicketSize]byte

	send, recv       cipher.AEAD
	sendSeq, recvSeq uint64
	wbuf             []byte
	rbuf             []byte
	rpending         []byte // opened bytes not yet read
	rerr             error  // sticky: io.EOF after the end frame, or what broke
}

func newBulkConn(conn net.Conn, ticket [BulkTicketSize]byte, send, recv cipher.AEAD) *BulkConn {
	return &BulkConn{conn: conn, Ticket: ticket, send: send, recv: recv}
}

// Bulk choices: the byte a console writes on a forward channel after a
// BulkOffer.
const (
	BulkDeclined byte = 0 // bytes follow on the channel
	BulkChosen   byte = 1 // bytes follow on the bulk connection
)

// SendBulkOffer is SendStatus(nil) with an offer of a bulk connection to
// addr, the peer's listener on its own address of the session's
// connection.
func (c *Channel) SendBulkOffer(o BulkOffer, addr *net.TCPAddr) error {
	return c.WriteMsg(&pb.ChannelReady{Bulk: &pb.BulkOffer{Ticket: o.Ticket[:], Secret: o.Secret[:], Port: uint32(addr.Port), Host: addr.IP.String()}})
}

// ReadStatusOffer is ReadStatus, also returning the peer's offer of a bulk
// connection and the address it listens on, when the status carries a
// well-formed one. A relayed offer (bulkrelay.go) comes with the address
// [::]:port, which no console reached a peer at: ReadStatusBulk reads it.
func (c *Channel) ReadStatusOffer() (*BulkOffer, *net.TCPAddr, error) {
	o, addr, r, err := c.ReadStatusBulk()
	if o != nil && addr == nil {
		addr = &net.TCPAddr{IP: net.IPv6unspecified}
		if r != nil {
			addr.Port = r.Slot.Port
		}
	}
	return o, addr, err
}

// AddCarried counts bytes a forward carried on a bulk connection as the
// channel's (BytesRead: from the other side; BytesWritten: to it), so that
// what is audited of a session does not depend on the path.
func (c *Channel) AddCarried(read, written int64) {
	c.nread.Add(uint64(read))
	c.nwrite.Add(uint64(written))
}

// DialBulk opens a bulk connection on conn (a fresh TCP connection to the
// peer) with the offer the peer made: it sends the ticket and its hello and
// waits for the peer's. On error conn is closed.
func DialBulk(conn net.Conn, o BulkOffer) (*BulkConn, error) {
	toPeer, toConsole, err := o.keys()
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	c := newBulkConn(conn, o.Ticket, toPeer, toConsole)
	_ = conn.SetDeadline(time.Now().Add(BulkHandshakeTimeout))
	hello := append(o.Ticket[:0:0], o.Ticket[:]...)
	hello = c.seal(hello, []byte(bulkHelloConsole))
	if _, err := conn.Write(hello); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("bulk connection: sending hello: %w", err)
	}
	if err := c.expectHello(bulkHelloPeer); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("bulk connection: the peer's hello: %w", err)
	}
	_ = conn.SetDeadline(time.Time{})
	return c, nil
}

// AcceptBulk reads a console's ticket and hello on conn (accepted by the
// peer's bulk listener), takes the matching offer from offers and answers
// with the peer's hello. A connection without a pending offer's ticket, or
// whose hello does not open under it, gets ErrBulkRefused and is closed;
// the offer stays for its console.
func AcceptBulk(conn net.Conn, offers *BulkOffers) (*BulkConn, error) {
	_ = conn.SetDeadline(time.Now().Add(BulkHandshakeTimeout))
	var t [BulkTicketSize]byte
	if _, err := io.ReadFull(conn, t[:]); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("%w: %v", ErrBulkRefused, err)
	}
	o, ok := offers.lookup(t)
	if !ok {
		_ = conn.Close()
		return nil, fmt.Errorf("%w: no pending offer has this ticket", ErrBulkRefused)
	}
	toPeer, toConsole, err := o.keys()
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	c := newBulkConn(conn, t, toConsole, toPeer)
	if err := c.expectHello(bulkHelloConsole); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("%w: %v", ErrBulkRefused, err)
	}
	if !offers.take(o) {
		_ = conn.Close()
		return nil, fmt.Errorf("%w: the offer was taken", ErrBulkRefused)
	}
	if _, err := conn.Write(c.seal(nil, []byte(bulkHelloPeer))); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("bulk connection: sending hello: %w", err)
	}
	_ = conn.SetDeadline(time.Time{})
	return c, nil
}

// expectHello reads one frame and checks that it is the hello want.
func (c *BulkConn) expectHello(want string) error {
	buf := make([]byte, len(want))
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if n != len(want) || string(buf) != want || len(c.rpending) != 0 {
		return errors.New("not a hello")
	}
	return nil
}

// nonce is seq as the 12-byte GCM nonce.
func bulkNonce(seq uint64) []byte {
	var n [12]byte
	binary.BigEndian.PutUint64(n[4:], seq)
	return n[:]
}

// seal appends a frame of p to dst.
func (c *BulkConn) seal(dst, p []byte) []byte {
	start := len(dst)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(p)+bulkTag))
	hdr := dst[start : start+bulkHeader]
	dst = c.send.Seal(dst, bulkNonce(c.sendSeq), p, hdr)
	c.sendSeq++
	return dst
}

// Write seals p in frames of at most BulkFrame bytes, one write each.
func (c *BulkConn) Write(p []byte) (int, error) {
	if c.wbuf == nil {
		c.wbuf = make([]byte, 0, bulkHeader+BulkFrame+bulkTag)
	}
	var n int
	for len(p) > 0 {
		m := min(len(p), BulkFrame)
		c.wbuf = c.seal(c.wbuf[:0], p[:m])
		if _, err := c.conn.Write(c.wbuf); err != nil {
			return n, err
		}
		n += m
		p = p[m:]
	}
	return n, nil
}

// CloseWrite sends the end frame and half-closes the connection: the other
// side reads io.EOF.
func (c *BulkConn) CloseWrite() error {
	if _, err := c.conn.Write(c.seal(nil, nil)); err != nil {
		return err
	}
	return closeWrite(c.conn)
}

// Read returns opened bytes. A frame that fits p is opened straight into
// it. io.EOF comes only after the end frame; a connection that ends
// without one is io.ErrUnexpectedEOF, a frame that does not open an error.
func (c *BulkConn) Read(p []byte) (int, error) {
	if len(c.rpending) > 0 {
		n := copy(p, c.rpending)
		c.rpending = c.rpending[n:]
		return n, nil
	}
	if c.rerr != nil {
		return 0, c.rerr
	}
	if c.rbuf == nil {
		c.rbuf = make([]byte, bulkHeader+BulkFrame+bulkTag)
	}
	hdr := c.rbuf[:bulkHeader]
	if _, err := io.ReadFull(c.conn, hdr); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF // cut short: no end frame
		}
		c.rerr = err
		return 0, err
	}
	size := int(binary.BigEndian.Uint32(hdr))
	if size < bulkTag || size > BulkFrame+bulkTag {
		c.rerr = fmt.Errorf("bulk connection: a frame of %d bytes", size)
		return 0, c.rerr
	}
	body := c.rbuf[bulkHeader : bulkHeader+size]
	if _, err := io.ReadFull(c.conn, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		c.rerr = err
		return 0, err
	}
	dst := body[:0] // in place, then copied out
	direct := len(p) >= size-bulkTag
	if direct {
		dst = p[:0]
	}
	plain, err := c.recv.Open(dst, bulkNonce(c.recvSeq), body, hdr)
	if err != nil {
		c.rerr = errors.New("bulk connection: a frame does not open (altered, replayed or not from the other end)")
		return 0, c.rerr
	}
	c.recvSeq++
	if len(plain) == 0 {
		c.rerr = io.EOF
		return 0, io.EOF
	}
	if direct {
		return len(plain), nil
	}
	n := copy(p, plain)
	c.rpending = plain[n:]
	return n, nil
}

// Close closes the connection.
func (c *BulkConn) Close() error { return c.conn.Close() }

// SetDeadline sets the underlying connection's deadlines.
func (c *BulkConn) SetDeadline(t time.Time) error { return c.conn.SetDeadline(t) }
