package channel

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	msmux "github.com/multiformats/go-multistream"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Protocol is the protocol ID of a session channel.
const Protocol protocol.ID = "/jumpmesh/session/1.0.0"

// ProtocolGrantFollows is the session protocol whose ChannelOpen may leave
// its grant to a ChannelGrant right after it (OpenPending). A peer serves
// both; a console uses it only with a peer whose identify lists it, so a
// peer of an earlier version gets today's order, the grant in the open.
const ProtocolGrantFollows protocol.ID = "/jumpmesh/session/1.1.0"

// ProtocolBulkSwitch is the session protocol whose exec and file channels
// may move to a bulk connection through the relay's splice
// (bulkswitch.go): 1.1.0 and ChannelOpen.bulk_switch. A console uses it only with a peer whose
// identify lists it, and asks for the switch only on a relayed connection.
const ProtocolBulkSwitch protocol.ID = "/jumpmesh/session/1.2.0"

// GrantWait bounds how long a peer waits for the grant of a ChannelOpen
// with grant_follows: the console asks the coordinator for it as it opens
// the channel, and sends it as soon as it has it (a few round trips; under
// a registration storm a few seconds). A channel whose grant does not come
// is reset, its resources freed, and nothing ran.
const GrantWait = 10 * time.Second

// grantWait is GrantWait; the package's tests shorten it.
var grantWait = GrantWait

// MaxMessage bounds one framed message: a file data chunk (ChunkSize) plus
// room for its framing.
const MaxMessage = ChunkSize + 4<<10

// HandshakeTimeout bounds each step of the handshake (ChannelOpen on the
// peer, ChannelReady on the console) when the context sets no earlier
// deadline.
const HandshakeTimeout = 30 * time.Second

// Channel is one session stream. Messages are unsigned-varint length
// prefixed protobufs; after the handshake of a forward the stream carries
// raw bytes through Read and Write.
//
// Reads belong to one goroutine. WriteMsg and Write may be called from
// several goroutines: each message goes out whole, in one stream write.
type Channel struct {
	st network.Stream

	rbuf   []byte // reused body buffer; never holds bytes of the next message
	nread  atomic.Uint64
	nwrite atomic.Uint64

	wmu  sync.Mutex
	wbuf []byte

	// sw is the bulk switch of a channel whose open asked for one
	// (bulkswitch.go); nil for the others, whose frames never leave st.
	sw *bulkSwitch
	// wbulk is the bulk connection this side writes on after its switch
	// marker (guarded by wmu); rbulk the one it reads from after the other
	// side's marker (the reader's only).
	wbulk, rbulk *BulkConn
	wclosed      bool // CloseWrite was called (guarded by wmu)
}

func newChannel(st network.Stream) *Channel { return &Channel{st: st} }

// Open opens a channel to p and presents open (grant and kind). It returns
// once the peer accepted, with the session ID the peer chose; a refusal
// comes back as the peer's catalog error. Relayed (limited) connections are
// allowed: a session is end-to-end encrypted whatever carries it.
//
// An exec or file open on a relayed connection to a peer that speaks
// ProtocolBulkSwitch asks for the bulk switch (bulkswitch.go).
func Open(ctx context.Context, h host.Host, p peer.ID, open *pb.ChannelOpen) (*Channel, string, error) {
	pid, open := switchOpen(h, p, Protocol, open)
	st, err := h.NewStream(network.WithAllowLimitedConn(ctx, "jump"), p, pid)
	if err != nil {
		return nil, "", dialError(ctx, p, err)
	}
	c, id, err := newChannel(st).handshake(ctx, p, open)
	if err == nil {
		c.consoleSwitch(open)
	}
	return c, id, err
}

// errFirstNotSent marks a handshake whose first message was not written.
var errFirstNotSent = errors.New("not sent")

// handshake writes first (the open, or the grant of a pending channel)
// and reads the peer's ChannelReady.
func (c *Channel) handshake(ctx context.Context, p peer.ID, first proto.Message) (*Channel, string, error) {
	st := c.st
	stop := context.AfterFunc(ctx, func() { _ = st.Reset() })
	_ = st.SetDeadline(handshakeDeadline(ctx))
	var ready pb.ChannelReady
	err := c.WriteMsg(first)
	if err != nil {
		err = fmt.Errorf("%w: %w", errFirstNotSent, err)
	} else {
		err = c.ReadMsg(&ready)
	}
	if !stop() && err == nil {
		err = ctx.Err() // ctx ended just as Ready arrived: the stream is reset
	}
	if err != nil {
		_ = st.Reset()
		return nil, "", dialError(ctx, p, err)
	}
	_ = st.SetDeadline(time.Time{})
	if ready.GetError() != nil {
		_ = st.Close()
		return nil, "", catalog.ErrorFromPB(ready.GetError())
	}
	return c, ready.GetSessionId(), nil
}

// handshakeDeadline is the context's deadline or HandshakeTimeout from now,
// whichever comes first.
func handshakeDeadline(ctx context.Context) time.Time {
	d := time.Now().Add(HandshakeTimeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		return cd
	}
	return d
}

// dialError names what went wrong opening a channel in catalog terms.
func dialError(ctx context.Context, p peer.ID, err error) error {
	switch {
	case errors.Is(err, msmux.ErrNotSupported[protocol.ID]{}):
		return catalog.Errorf(catalog.CodePeerOtherVersion, "(%s does not speak %s)", p, Protocol)
	case ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded):
		return ctx.Err()
	case errors.Is(ctx.Err(), context.DeadlineExceeded), isTimeout(err):
		return catalog.Errorf(catalog.CodeConnectTimeout, "(%s: %w)", p, err)
	}
	return catalog.Errorf(catalog.CodeActivePeerNotConnected, "(opening a session with %s: %w)", p, err)
}

// isTimeout reports a deadline, whoever's: the context's, the stream's
// (yamux says "i/o deadline reached"), the OS's.
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &t) && t.Timeout())
}

// Accept reads the ChannelOpen a console sent on st and, when it says its
// grant follows (ProtocolGrantFollows only), the ChannelGrant after it,
// within GrantWait: the open it returns holds the grant either way. The
// caller checks the grant and answers with Ready. On error the stream has
// been reset.
func Accept(st network.Stream) (*Channel, *pb.ChannelOpen, error) {
	c := newChannel(st)
	_ = st.SetReadDeadline(time.Now().Add(HandshakeTimeout))
	var open pb.ChannelOpen
	err := c.ReadMsg(&open)
	if err == nil && open.GetGrantFollows() {
		err = c.readGrant(&open)
	}
	if err != nil {
		_ = st.Reset()
		return nil, nil, fmt.Errorf("reading the channel open from %s: %w", st.Conn().RemotePeer(), err)
	}
	_ = st.SetReadDeadline(time.Time{})
	return c, &open, nil
}

// readGrant reads the ChannelGrant of an open with grant_follows into it.
// Such an open carries no grant of its own, and comes on
// ProtocolGrantFollows only: a stream of Protocol has one message before
// Ready, as it always had.
func (c *Channel) readGrant(open *pb.ChannelOpen) error {
	if c.st.Protocol() != ProtocolGrantFollows && c.st.Protocol() != ProtocolBulkSwitch {
		return catalog.Errorf(catalog.CodeProtocol, "(a grant that follows on %s)", c.st.Protocol())
	}
	if open.GetGrant() != nil {
		return catalog.Errorf(catalog.CodeProtocol, "(a grant in the open and one to follow)")
	}
	_ = c.st.SetReadDeadline(time.Now().Add(grantWait))
	var g pb.ChannelGrant
	if err := c.ReadMsg(&g); err != nil {
		return fmt.Errorf("waiting for the grant: %w", err)
	}
	open.Grant, open.GrantFollows = g.GetGrant(), false
	return nil
}

// Pending is a channel opened before its grant (OpenPending): Grant sends
// the grant and waits for the peer's answer; Cancel gives it up.
type Pending struct {
	c    *Channel
	p    peer.ID
	open *pb.ChannelOpen
	sent *pb.ChannelOpen // open as sent: with bulk_switch when it asked
}

// ErrGrantFirst says the peer does not speak ProtocolGrantFollows (an
// earlier version, or not identified yet): open the channel with its
// grant (Open).
var ErrGrantFirst = errors.New("the peer takes the grant in the channel open")

// OpenPending opens a channel to p, on a connection h has already, and
// presents open (its kind; no grant) with the grant to follow, so that
// the stream is set up on both sides while the console still asks the
// coordinator for the grant. The peer runs nothing until Grant: it checks
// the grant then as it would in the open. ErrGrantFirst when p does not
// speak ProtocolGrantFollows.
func OpenPending(ctx context.Context, h host.Host, p peer.ID, open *pb.ChannelOpen) (*Pending, error) {
	if ok, err := h.Peerstore().SupportsProtocols(p, ProtocolGrantFollows); err != nil || len(ok) == 0 {
		return nil, ErrGrantFirst
	}
	open = proto.CloneOf(open)
	open.Grant, open.GrantFollows = nil, true
	pid, sent := switchOpen(h, p, ProtocolGrantFollows, open)
	st, err := h.NewStream(network.WithNoDial(network.WithAllowLimitedConn(ctx, "jump"), "grant follows"), p, pid)
	if err != nil {
		return nil, dialError(ctx, p, err)
	}
	c := newChannel(st)
	_ = st.SetWriteDeadline(handshakeDeadline(ctx))
	if err := c.WriteMsg(sent); err != nil {
		_ = st.Reset()
		return nil, dialError(ctx, p, err)
	}
	_ = st.SetWriteDeadline(time.Time{})
	return &Pending{c: c, p: p, open: open, sent: sent}, nil
}

// Open is the open the channel was opened with (without its grant).
func (pd *Pending) Open() *pb.ChannelOpen { return pd.open }

// Peer is the peer the channel goes to.
func (pd *Pending) Peer() peer.ID { return pd.p }

// ErrGrantNotSent says Pending.Grant could not send the grant (the
// channel was reset: the peer gave up waiting, or the connection went).
// Nothing ran on the peer for it: the caller may open a channel anew.
// Any other error of Grant came after the grant was sent, and a new
// channel could run the session twice.
var ErrGrantNotSent = errors.New("the grant was not sent on the pending channel")

// Grant sends g and returns, as Open does, once the peer accepted, with
// its session ID, or with its refusal. On error the channel is gone.
func (pd *Pending) Grant(ctx context.Context, g *pb.JumpGrant) (*Channel, string, error) {
	ch, id, err := pd.c.handshake(ctx, pd.p, &pb.ChannelGrant{Grant: g})
	if err == nil {
		ch.consoleSwitch(pd.sent)
	}
	if errors.Is(err, errFirstNotSent) {
		err = fmt.Errorf("%w: %w", ErrGrantNotSent, err)
	}
	return ch, id, err
}

// Cancel gives the channel up (no grant: the peer resets it unused).
func (pd *Pending) Cancel() { _ = pd.c.st.Reset() }

// Ready answers the ChannelOpen: accepted with sessionID when refuse is nil;
// otherwise refused with refuse's catalog error, after which the stream is
// closed and the channel must not be used.
func (c *Channel) Ready(sessionID string, refuse error) error {
	_ = c.st.SetWriteDeadline(time.Now().Add(HandshakeTimeout))
	err := c.WriteMsg(&pb.ChannelReady{Error: catalog.ErrorToPB(refuse), SessionId: sessionID})
	_ = c.st.SetWriteDeadline(time.Time{})
	if refuse != nil {
		return errors.Join(err, c.st.Close())
	}
	return err
}

// SendStatus sends the second ChannelReady of a channel kind that has work
// to do between acceptance and its data phase (a forward's dial): nil
// means go on, an error is what the console will return.
func (c *Channel) SendStatus(failure error) error {
	return c.WriteMsg(&pb.ChannelReady{Error: catalog.ErrorToPB(failure)})
}

// ReadStatus reads what SendStatus sent: nil to go on, or the peer's
// catalog error.
func (c *Channel) ReadStatus() error {
	var st pb.ChannelReady
	if err := c.ReadMsg(&st); err != nil {
		return catalog.Errorf(catalog.CodeSessionInternal, "(waiting for the peer's status: %w)", err)
	}
	return catalog.ErrorFromPB(st.GetError())
}

// ReadMsg reads the next message into m. It reads the length prefix one
// byte at a time and then exactly the body, so nothing after this message
// is consumed: the stream may switch to raw bytes after any message. A clean
// end of stream between messages is io.EOF.
//
// On a channel with a bulk switch, an empty frame and the BulkSwitch after
// it are the switch's (bulkswitch.go): ReadMsg acts on them and reads on.
func (c *Channel) ReadMsg(m proto.Message) error {
	buf, err := c.readFrame()
	for err == nil && len(buf) == 0 && c.sw != nil {
		if err = c.readSwitch(); err == nil {
			buf, err = c.readFrame()
		}
	}
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(buf, m); err != nil {
		return catalog.Errorf(catalog.CodeProtocol, "(%T: %w)", m, err)
	}
	return nil
}

// readFrame reads the next frame's body (into rbuf).
func (c *Channel) readFrame() ([]byte, error) {
	n, err := c.readLength()
	if err != nil {
		return nil, err
	}
	if cap(c.rbuf) < n {
		c.rbuf = make([]byte, n)
	}
	buf := c.rbuf[:n]
	if _, err := io.ReadFull(c, buf); err != nil {
		return nil, noEOF(err)
	}
	return buf, nil
}

func (c *Channel) readLength() (int, error) {
	var one [1]byte
	var x uint64
	for i := 0; i < binary.MaxVarintLen64; i++ {
		if _, err := io.ReadFull(c, one[:]); err != nil {
			if i > 0 {
				err = noEOF(err)
			}
			return 0, err
		}
		x |= uint64(one[0]&0x7f) << (7 * i)
		if one[0] < 0x80 {
			if x > MaxMessage {
				return 0, catalog.Errorf(catalog.CodeProtocol, "(a message of %d bytes; at most %d)", x, MaxMessage)
			}
			return int(x), nil
		}
	}
	return 0, catalog.Errorf(catalog.CodeProtocol, "(a message length prefix that does not end)")
}

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// WriteMsg sends m in one stream write.
func (c *Channel) WriteMsg(m proto.Message) error {
	size := proto.Size(m)
	if size > MaxMessage {
		return catalog.Errorf(catalog.CodeInternal, "(%T of %d bytes; at most %d)", m, size, MaxMessage)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	buf := binary.AppendUvarint(c.wbuf[:0], uint64(size))
	buf, err := proto.MarshalOptions{}.MarshalAppend(buf, m)
	if err != nil {
		return fmt.Errorf("encoding %T: %w", m, err)
	}
	c.wbuf = buf
	n, err := c.writer().Write(buf)
	c.nwrite.Add(uint64(n))
	return err
}

// Read reads raw bytes (after a forward's handshake).
func (c *Channel) Read(p []byte) (int, error) {
	if c.rbulk != nil {
		n, err := c.rbulk.Read(p)
		c.nread.Add(uint64(n))
		return n, err
	}
	n, err := c.st.Read(p)
	c.nread.Add(uint64(n))
	return n, err
}

// Write writes raw bytes (after a forward's handshake).
func (c *Channel) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	n, err := c.st.Write(p)
	c.nwrite.Add(uint64(n))
	return n, err
}

// BytesRead is how many bytes this side has read from the stream, framing
// included: on the peer, the console→peer volume for the audit.
func (c *Channel) BytesRead() uint64 { return c.nread.Load() }

// BytesWritten is how many bytes this side has written to the stream.
func (c *Channel) BytesWritten() uint64 { return c.nwrite.Load() }

// Stream is the underlying libp2p stream (remote peer, connection path).
func (c *Channel) Stream() network.Stream { return c.st }

// CloseWrite ends this side's direction; the other side reads io.EOF. It
// does not wait for a write in progress, except on a channel with a bulk
// switch, where it ends the bulk connection's direction too.
func (c *Channel) CloseWrite() error {
	if c.sw != nil {
		return c.closeWriteSwitch()
	}
	return c.st.CloseWrite()
}

// Close closes both directions (and the bulk connection of a switch).
func (c *Channel) Close() error {
	c.endSwitch()
	return c.st.Close()
}

// Reset aborts the stream in both directions; the other side's reads and
// writes fail. A bulk connection of a switch is closed.
func (c *Channel) Reset() error {
	c.endSwitch()
	return c.st.Reset()
}

// SetReadDeadline sets the read deadline of the stream and of the bulk
// connection of a switch.
func (c *Channel) SetReadDeadline(t time.Time) error {
	if c.sw != nil {
		c.sw.setReadDeadline(t)
	}
	return c.st.SetReadDeadline(t)
}
