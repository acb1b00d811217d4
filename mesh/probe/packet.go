package probe

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
)

// Packet types.
const (
	typeOpener = 1 // hard side → easy side's mapping, one per socket
	typeProbe  = 2 // easy side → a port of the hard side's public IP
)

// KeySize is the size of ProbeOffer.key, the packets' MAC key.
const KeySize = 16

const (
	macSize    = 16
	headerSize = 4 + 1 + 2 + 2 + 8 // magic, type, port, index, nonce
	packetSize = headerSize + macSize
)

// magic starts every packet. Its first byte 0x00 has QUIC's fixed bit
// clear, so quic-go hands the datagram to the non-QUIC reader of the
// shared socket instead of taking it for a QUIC packet.
var magic = [4]byte{0x00, 'J', 'M', 'P'}

// packet is the content of an opener or a probe.
type packet struct {
	typ   byte
	port  uint16 // probe: the port it was sent to; opener: 0
	index uint16 // opener: the hard side's socket; probe: 0
}

// seal encodes p with a fresh nonce and its MAC under key.
func seal(key []byte, p packet) []byte {
	b := make([]byte, packetSize)
	copy(b, magic[:])
	b[4] = p.typ
	binary.BigEndian.PutUint16(b[5:], p.port)
	binary.BigEndian.PutUint16(b[7:], p.index)
	_, _ = rand.Read(b[9:headerSize])
	m := hmac.New(sha256.New, key)
	m.Write(b[:headerSize])
	copy(b[headerSize:], m.Sum(nil)[:macSize])
	return b
}

// open decodes b when it is a packet of this exchange (its MAC verifies
// under key); ok false for anything else, which callers ignore.
func open(key, b []byte) (p packet, ok bool) {
	if len(b) != packetSize || [4]byte(b[:4]) != magic {
		return packet{}, false
	}
	m := hmac.New(sha256.New, key)
	m.Write(b[:headerSize])
	if !hmac.Equal(m.Sum(nil)[:macSize], b[headerSize:]) {
		return packet{}, false
	}
	p = packet{typ: b[4], port: binary.BigEndian.Uint16(b[5:]), index: binary.BigEndian.Uint16(b[7:])}
	if p.typ != typeOpener && p.typ != typeProbe {
		return packet{}, false
	}
	return p, true
}

// isProbePacket reports whether b looks like one of our packets (verified
// or not): the proxy never hands them to the QUIC listener.
func isProbePacket(b []byte) bool { return len(b) >= 4 && [4]byte(b[:4]) == magic }
