package mesh

import ma "github.com/multiformats/go-multiaddr"

// EncodeAddrs turns multiaddrs into their binary form for the wire.
func EncodeAddrs(addrs []ma.Multiaddr) [][]byte {
	out := make([][]byte, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, a.Bytes())
	}
	return out
}

// DecodeAddrs reads binary multiaddrs from the wire, skipping any that do
// not parse (one bad address must not hide the others).
func DecodeAddrs(raw [][]byte) []ma.Multiaddr {
	var out []ma.Multiaddr
	for _, b := range raw {
		if a, err := ma.NewMultiaddrBytes(b); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// PreferTCP keeps only the TCP addresses when there are any. Bulk streams
// (sessions, a peer's control stream) measured several times the
// throughput and less CPU and memory over TCP with TLS than over QUIC
// (README, Performance).
func PreferTCP(addrs []ma.Multiaddr) []ma.Multiaddr {
	var tcp []ma.Multiaddr
	for _, a := range addrs {
		if _, err := a.ValueForProtocol(ma.P_TCP); err == nil {
			tcp = append(tcp, a)
		}
	}
	if len(tcp) == 0 {
		return addrs
	}
	return tcp
}

// IsCircuit reports whether a is a relayed (/p2p-circuit) address.
func IsCircuit(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}
