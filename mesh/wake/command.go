package wake

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Protocol is the protocol ID of a wake order from the coordinator to a waker.
const Protocol protocol.ID = "/jumpmesh/wake/1.0.0"

const (
	// MaxCommand bounds an encoded command (Magic included) on a passive
	// port and a wake stream's messages. It keeps a command in one UDP
	// datagram of a 1500-byte link (1452 bytes of payload over IPv6). A
	// command with 8 MACs, 8 IPv6 target IPs and 8 IPv6 passive addresses
	// is about 1100 bytes; the coordinator caps each list at 8.
	MaxCommand = 1400
	// MaxValidity is the longest a command may stay valid: long enough for
	// a waker behind a slow link, short enough that a captured command is
	// soon of no use.
	MaxValidity = 60 * time.Second
	// DefaultPassivePort is the seeds' passive port.
	DefaultPassivePort = 5832
	// Cooldown is how long after an attempt on a target the next one is
	// refused (the seeds' 30 seconds).
	Cooldown = 30 * time.Second
	// NonceSize is the length of a command's nonce.
	NonceSize = 16
)

// Magic starts every command on a passive port, so stray traffic is
// dropped before any parsing.
const Magic = "JMWAKE1\n"

const signingDomain = "jumpmesh wake v1\n"

// ErrInvalid is wrapped by every reason a command is refused.
var ErrInvalid = errors.New("invalid wake command")

// Reasons a command is refused, wrapped in ErrInvalid; counters use them.
var (
	ErrMalformed   = fmt.Errorf("%w: malformed", ErrInvalid)
	ErrSignature   = fmt.Errorf("%w: bad signature", ErrInvalid)
	ErrOtherSite   = fmt.Errorf("%w: another site", ErrInvalid)
	ErrOtherTarget = fmt.Errorf("%w: for another peer", ErrInvalid)
	ErrExpired     = fmt.Errorf("%w: expired", ErrInvalid)
	ErrTooLong     = fmt.Errorf("%w: valid for too long", ErrInvalid)
	ErrReplay      = fmt.Errorf("%w: replayed", ErrInvalid)
)

// Sign fills body's site and nonce (when empty) and signs it with the site
// key. It refuses a body whose command would pass MaxCommand.
func Sign(signer mesh.Signer, body *pb.WakeBody) (*pb.WakeCommand, error) {
	b := proto.Clone(body).(*pb.WakeBody)
	b.SiteId = []byte(signer.PeerID())
	if len(b.Nonce) == 0 {
		b.Nonce = make([]byte, NonceSize)
		if _, err := rand.Read(b.Nonce); err != nil {
			return nil, err
		}
	}
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(b)
	if err != nil {
		return nil, err
	}
	sig, err := signer.Sign(append([]byte(signingDomain), raw...))
	if err != nil {
		return nil, fmt.Errorf("signing the wake command: %w", err)
	}
	cmd := &pb.WakeCommand{Body: raw, Signature: sig}
	if n := len(Magic) + proto.Size(cmd); n > MaxCommand {
		return nil, fmt.Errorf("wake command of %d bytes: at most %d (fewer MACs, IPs or passive addresses)", n, MaxCommand)
	}
	return cmd, nil
}

// Verify checks that cmd was signed by site, is in force at now and, when
// target is not empty, names target. It does not check replays (see
// Replays). The body's claims (site, target, nonce, expiry) are checked
// before the signature, so a command that fails them costs no signature
// check: for a forged one that also fails them, the claim's error is
// returned rather than ErrSignature.
func Verify(cmd *pb.WakeCommand, site, target peer.ID, now time.Time) (*pb.WakeBody, error) {
	body, err := precheck(cmd, site, target, now)
	if err != nil {
		return nil, err
	}
	if err := mesh.VerifySignature(site, append([]byte(signingDomain), cmd.GetBody()...), cmd.GetSignature()); err != nil {
		return nil, ErrSignature
	}
	return body, nil
}

// precheck is Verify without the signature: what can be refused cheaply.
func precheck(cmd *pb.WakeCommand, site, target peer.ID, now time.Time) (*pb.WakeBody, error) {
	if len(cmd.GetBody()) == 0 || len(cmd.GetSignature()) == 0 {
		return nil, ErrMalformed
	}
	body := new(pb.WakeBody)
	if err := proto.Unmarshal(cmd.GetBody(), body); err != nil {
		return nil, ErrMalformed
	}
	exp := time.UnixMilli(body.GetExpiresUnixMillis())
	switch {
	case peer.ID(body.GetSiteId()) != site:
		return nil, ErrOtherSite
	case target != "" && peer.ID(body.GetTargetId()) != target:
		return nil, ErrOtherTarget
	case len(body.GetNonce()) != NonceSize:
		return nil, ErrMalformed
	case !now.Before(exp):
		return nil, ErrExpired
	case exp.Sub(now) > MaxValidity+5*time.Second: // 5 s of clock skew
		return nil, ErrTooLong
	}
	return body, nil
}

// Encode is a command as it travels to a passive port over UDP (over TCP it
// is preceded by its length, see StreamFrame).
func Encode(cmd *pb.WakeCommand) ([]byte, error) {
	raw, err := proto.Marshal(cmd)
	if err != nil {
		return nil, err
	}
	if len(Magic)+len(raw) > MaxCommand {
		return nil, fmt.Errorf("wake command of %d bytes: at most %d", len(Magic)+len(raw), MaxCommand)
	}
	return append([]byte(Magic), raw...), nil
}

// Decode parses what Encode made; it allocates nothing for input without
// the Magic or over MaxCommand.
func Decode(b []byte) (*pb.WakeCommand, error) {
	if len(b) > MaxCommand || len(b) <= len(Magic) || string(b[:len(Magic)]) != Magic {
		return nil, ErrMalformed
	}
	cmd := new(pb.WakeCommand)
	if err := proto.Unmarshal(b[len(Magic):], cmd); err != nil {
		return nil, ErrMalformed
	}
	return cmd, nil
}

// StreamFrame is Encode's bytes preceded by their length (2 bytes, big
// endian): the command on a TCP passive port.
func StreamFrame(cmd *pb.WakeCommand) ([]byte, error) {
	b, err := Encode(cmd)
	if err != nil {
		return nil, err
	}
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...), nil
}
