package punch

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/libp2p/go-libp2p/core/host"

	"github.com/jumpmesh/jumpmesh/mesh"
)

// Hairpinning (RFC 4787 §6): does the NAT forward a datagram that a host
// behind it sends to one of its own public mappings back inside? Two hosts
// behind one NAT that does not can reach each other only by their LAN
// addresses (or a relay), never by the public ones a punch offers; that is
// what an administrator reads in the NAT report.

const (
	// hairpinTries is how many datagrams Hairpin sends, one per wait.
	hairpinTries = 3
	// hairpinWait is how long Hairpin waits for each: a hairpinned
	// datagram crosses the host's own NAT, never the Internet, so it comes
	// back in a LAN round trip or not at all.
	hairpinWait = 500 * time.Millisecond
	// HairpinTimeout bounds one Hairpin call (every try and its wait).
	HairpinTimeout = hairpinTries * hairpinWait
)

// hairpinMagic starts a hairpin datagram. Its first byte 0x00 has QUIC's
// fixed bit clear, so the host's QUIC socket hands it to SharedUDP's
// readers instead of quic-go; 'H' tells it from a probe (mesh/probe's
// 0x00 'J' 'M' 'P').
var hairpinMagic = [4]byte{0x00, 'J', 'M', 'H'}

// hairpinSize is a datagram's size: the magic and a 16-byte nonce.
const hairpinSize = 4 + 16

// Hairpin tells whether the host's NAT hairpins UDP: from a fresh UDP
// socket on the host (another port, so another flow through the NAT), it
// sends a small datagram carrying a random nonce to mapped, the public
// mapping of h's QUIC listening port, and watches that socket (through
// mesh.SharedUDP) for it, hairpinTries times, hairpinWait each. True: the
// datagram came back through the NAT; false: none of them did; an error
// (neither) when the test could not run or ctx ended first.
//
// mapped must be the host's own mapping as a trusted observer (the
// coordinator, a relay) saw it: the caller takes it from the Puncher's
// NAT report, never from a remote, so Hairpin sends nothing toward
// another host. Were an observer to lie, the cost is hairpinTries
// datagrams of hairpinSize bytes to one address, once per mapping the
// caller tests. Only a datagram that carries this call's nonce counts: a
// stranger who sends datagrams to the QUIC port cannot make it say true
// without the nonce, which never leaves the host unless the NAT forwards
// it out (one that does not hairpin drops it, or sends it nowhere the
// stranger is).
//
// Where the host has no NAT, mapped is its own address and the datagram
// arrives: true, which says nothing of a NAT (the peer does not test
// then). An endpoint-dependent NAT that does hairpin may still filter the
// datagram, since the fresh socket's mapping never sent to mapped: false
// means hosts behind this NAT cannot reach this host by its public
// mapping, which is the question the report answers.
//
// For as long as it runs (HairpinTimeout at most), Hairpin reads every
// datagram that is not QUIC arriving on the QUIC socket and drops those
// that are not its own, so a port-mapping probe (mesh/probe) arriving
// then may be lost to it, as probes may be lost on the way.
func Hairpin(ctx context.Context, h host.Host, mapped netip.AddrPort) (bool, error) {
	mapped = netip.AddrPortFrom(mapped.Addr().Unmap(), mapped.Port())
	if !mapped.IsValid() || mapped.Port() == 0 {
		return false, fmt.Errorf("hairpin test: %q is no address to test", mapped)
	}
	network := "udp6"
	if mapped.Addr().Is4() {
		network = "udp4"
	}
	pc, err := mesh.SharedUDP(h, network)
	if err != nil {
		return false, fmt.Errorf("hairpin test: %w", err)
	}
	var nonce [hairpinSize]byte
	copy(nonce[:], hairpinMagic[:])
	if _, err := rand.Read(nonce[4:]); err != nil {
		pc.Close()
		return false, fmt.Errorf("hairpin test: %w", err)
	}
	arrived := make(chan struct{}, 1)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 64)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return // pc closed
			}
			if n == hairpinSize && bytes.Equal(buf[:n], nonce[:]) {
				select {
				case arrived <- struct{}{}:
				default:
				}
			}
		}
	}()
	defer func() { pc.Close(); <-readDone }()

	sock, err := net.ListenUDP(network, nil)
	if err != nil {
		return false, fmt.Errorf("hairpin test: %w", err)
	}
	defer sock.Close()
	to := net.UDPAddrFromAddrPort(mapped)
	wait := time.NewTimer(hairpinWait)
	defer wait.Stop()
	var sent int
	var sendErr error
	for range hairpinTries {
		// An unconnected socket hears no ICMP errors: a send fails only
		// when the host cannot send at all (no route).
		if _, err := sock.WriteToUDP(nonce[:], to); err != nil {
			sendErr = err
		} else {
			sent++
		}
		wait.Reset(hairpinWait)
		select {
		case <-arrived:
			return true, nil
		case <-ctx.Done():
			return false, fmt.Errorf("hairpin test: %w", ctx.Err())
		case <-wait.C:
		}
	}
	if sent == 0 {
		return false, fmt.Errorf("hairpin test: sending to %s: %w", mapped, sendErr)
	}
	return false, nil
}
