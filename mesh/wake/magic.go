package wake

import (
	"bytes"
	"fmt"
	"net"
	"strings"
)

// Ports a magic packet is broadcast to over UDP (discard and echo: what
// wakeonlan tools use; a NIC in WOL mode matches the payload, not the port).
var Ports = []int{9, 7}

// EtherType of a raw Wake-on-LAN frame.
const EtherType = 0x0842

// MagicPacket is the Wake-on-LAN payload for mac: 6 bytes of 0xFF, the MAC
// 16 times, then the SecureOn password (none, 4 or 6 bytes).
func MagicPacket(mac net.HardwareAddr, password []byte) []byte {
	b := make([]byte, 0, 6+16*len(mac)+len(password))
	b = append(b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	for range 16 {
		b = append(b, mac...)
	}
	return append(b, password...)
}

// ParseMagicPacket finds a magic packet for a 6-byte MAC in payload (a UDP
// payload or an Ethernet frame's) and returns the MAC and the password
// after it (4 or 6 bytes, or none), as a NIC in WOL mode would read it.
func ParseMagicPacket(payload []byte) (mac net.HardwareAddr, password []byte, ok bool) {
	sync := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	for i := 0; i+6+96 <= len(payload); i++ {
		if !bytes.Equal(payload[i:i+6], sync) {
			continue
		}
		m := payload[i+6 : i+12]
		good := !bytes.Equal(m, sync)
		for k := 1; good && k < 16; k++ {
			good = bytes.Equal(payload[i+6+6*k:i+12+6*k], m)
		}
		if !good {
			continue
		}
		rest := payload[i+102:]
		switch {
		case len(rest) >= 6:
			password = rest[:6]
		case len(rest) >= 4:
			password = rest[:4]
		}
		return net.HardwareAddr(append([]byte(nil), m...)), append([]byte(nil), password...), true
	}
	return nil, nil, false
}

// ParsePassword reads a SecureOn password written as a MAC is
// (XX-XX-XX-XX-XX-XX or with colons; 6 bytes). Empty means none.
func ParsePassword(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	hw, err := net.ParseMAC(strings.ReplaceAll(s, "-", ":"))
	if err != nil || len(hw) != 6 {
		return nil, fmt.Errorf("SecureOn password %q: six hexadecimal bytes like 01-23-45-67-89-AB", s)
	}
	return []byte(hw), nil
}

// FormatPassword writes a password as ParsePassword reads it.
func FormatPassword(p []byte) string {
	return strings.ToUpper(strings.ReplaceAll(net.HardwareAddr(p).String(), ":", "-"))
}
