package control

import (
	"bytes"
	"context"
	"errors"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/frame"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// ControlProtocol is the protocol ID of the control protocol; see doc.go.
const Protocol protocol.ID = "/jumpmesh/control/1.0.0"

// MaxControlMessage bounds one control message on the wire.
const MaxMessage = 1 << 20

// ControlTimeout bounds one control exchange when the caller's context has
// no earlier deadline.
const Timeout = 30 * time.Second

// Call opens a control stream to p, sends req, and returns the response
// body. A response carrying an error is returned as that *Error.
func Call(ctx context.Context, h host.Host, p peer.ID, req *pb.Request) (*pb.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	s, err := h.NewStream(ctx, p, Protocol)
	if err != nil {
		if ctx.Err() != nil {
			return nil, catalog.Errorf(catalog.CodeCoordinatorDown, "(%s: timed out: %w)", p, err)
		}
		return nil, catalog.Errorf(catalog.CodeCoordinatorDown, "(%s: %w)", p, notSent{err})
	}
	defer s.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	if err := writeRequest(s, req); err != nil {
		s.Reset()
		return nil, catalog.Errorf(catalog.CodeCoordinatorDown, "(%s: sending the request: %w)", p, err)
	}
	// The server may already have answered and closed the stream (over
	// QUIC its close stops our sending side): a failed half-close is not
	// a failed request, the response below says how it went.
	_ = s.CloseWrite()
	resp, err := readResponse(s)
	if err != nil {
		s.Reset()
		return nil, catalog.Errorf(catalog.CodeCoordinatorDown, "(%s: reading the response: %w)", p, err)
	}
	if resp.GetError() != nil {
		return nil, catalog.ErrorFromPB(resp.GetError())
	}
	return resp, nil
}

// ControlHandler answers one control request from an authenticated remote.
type Handler func(ctx context.Context, remote peer.ID, req *pb.Request) (*pb.Response, error)

type remoteAddrKey struct{}

// RemoteAddr is, in a Handler's ctx, the remote address of the connection
// the request arrived on (with /p2p-circuit when it came through a relay);
// nil elsewhere.
func RemoteAddr(ctx context.Context) ma.Multiaddr {
	a, _ := ctx.Value(remoteAddrKey{}).(ma.Multiaddr)
	return a
}

// Admission is what a ControlGate allows one stream.
type Admission struct {
	// MaxMessage bounds the request (0: MaxControlMessage).
	MaxMessage int
	// ReadTimeout, when shorter than ControlTimeout, bounds how long the
	// caller may take to send it.
	ReadTimeout time.Duration
	// Release, if set, is called once the request has been read (or the
	// read failed): it frees what the gate counted.
	Release func()
}

// ControlGate decides who the caller is before any byte of its request is
// read: the secure channel has already authenticated the remote's peer ID,
// so a server can give members the full limits and strangers small ones.
// A false ok resets the stream unread.
type Gate interface {
	Admit(remote peer.ID) (a Admission, ok bool)
}

// ServeOption configures ServeControl.
type ServeOption func(*serveConfig)

type serveConfig struct{ gate Gate }

// WithGate makes ServeControl ask gate before reading each request.
// Without one, every caller may send MaxControlMessage bytes.
func WithGate(gate Gate) ServeOption { return func(c *serveConfig) { c.gate = gate } }

// ServeControl registers handler for the control protocol on h. Each stream
// carries exactly one request and one response.
func Serve(ctx context.Context, h host.Host, handler Handler, opts ...ServeOption) {
	var cfg serveConfig
	for _, o := range opts {
		o(&cfg)
	}
	h.SetStreamHandler(Protocol, func(s network.Stream) {
		defer s.Close()
		_ = s.SetDeadline(time.Now().Add(Timeout))
		remote := s.Conn().RemotePeer()
		req, ok := readRequest(s, remote, cfg.gate)
		if !ok {
			s.Reset()
			return
		}
		resp, err := handler(context.WithValue(ctx, remoteAddrKey{}, s.Conn().RemoteMultiaddr()), remote, req)
		if err != nil {
			resp = &pb.Response{Error: catalog.ErrorToPB(err)}
		}
		if resp == nil {
			resp = &pb.Response{Body: &pb.Response_Ok{Ok: &pb.Empty{}}}
		}
		// One write: pbio's writer sends the length and the message apart,
		// two yamux frames and TLS records (frame.Append).
		b, err := frame.Append(nil, resp)
		if err == nil {
			_, err = s.Write(b)
		}
		if err != nil {
			s.Reset()
		}
	})
}

// readRequest reads one request within the limits the gate gives remote.
func readRequest(s network.Stream, remote peer.ID, gate Gate) (*pb.Request, bool) {
	a := Admission{}
	if gate != nil {
		var ok bool
		if a, ok = gate.Admit(remote); !ok {
			return nil, false
		}
		if a.Release != nil {
			defer a.Release()
		}
	}
	if a.MaxMessage <= 0 {
		a.MaxMessage = MaxMessage
	}
	if a.ReadTimeout > 0 && a.ReadTimeout < Timeout {
		_ = s.SetReadDeadline(time.Now().Add(a.ReadTimeout))
	}
	req := new(pb.Request)
	if err := frame.NewReader(s, s.Scope(), a.MaxMessage).ReadMsg(req); err != nil {
		return nil, false
	}
	return req, true
}

// DecodeRequest and DecodeResponse parse one length-delimited control
// message from raw bytes, as the stream handlers do. They exist for fuzzing
// and for tools that read captured traffic.
func DecodeRequest(raw []byte) (*pb.Request, error) {
	m := new(pb.Request)
	return m, decodeDelimited(raw, m)
}

func DecodeResponse(raw []byte) (*pb.Response, error) {
	m, err := readResponse(bytes.NewReader(raw))
	if err != nil {
		return m, catalog.Errorf(catalog.CodeProtocol, "(decoding %T: %w)", m, err)
	}
	return m, nil
}

// readResponse reads one response as a caller does: the declared length
// at once (what it asked of a coordinator it authenticated), a peer list
// without protobuf's decoder (unmarshalResponse).
func readResponse(r io.Reader) (*pb.Response, error) {
	raw, err := frame.NewReader(r, nil, MaxMessage).AllocateDeclared().ReadRaw()
	if err != nil {
		return new(pb.Response), err
	}
	return unmarshalResponse(raw)
}

// EncodeDelimited frames m the way the control protocol does.
func EncodeDelimited(m proto.Message) ([]byte, error) { return frame.Append(nil, m) }

func decodeDelimited(raw []byte, m proto.Message) error {
	if err := frame.NewReader(bytes.NewReader(raw), nil, MaxMessage).ReadMsg(m); err != nil {
		return catalog.Errorf(catalog.CodeProtocol, "(decoding %T: %w)", m, err)
	}
	return nil
}

// RequestName is the name of the request's body, for metrics and logs
// ("user_invite", ...).
func RequestName(req *pb.Request) string {
	m := req.ProtoReflect()
	f := m.WhichOneof(m.Descriptor().Oneofs().ByName("body"))
	if f == nil {
		return "empty"
	}
	return string(f.Name())
}

// notSent marks a failure to open the request's stream: nothing of the
// request left this host, so asking again elsewhere is safe (NotSent).
type notSent struct{ err error }

func (e notSent) Error() string { return e.err.Error() }
func (e notSent) Unwrap() error { return e.err }

// NotSent reports whether a Call failed before any of its request was
// sent (the stream could not be opened: the connection was gone).
func NotSent(err error) bool { return errors.As(err, new(notSent)) }
