package main

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	be "encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
)

// The floor of a forwarded byte (issue 17), measured in the same run as
// the real forward: what any forward that encrypts end to end between two
// processes must do — read from the client's socket, one AES-GCM pass,
// loopback TCP to the other side, one AES-GCM pass, write to the target's
// socket — and nothing else: no multiplexer, no TLS records of 16 KiB, a
// frame per read of up to floorFrame bytes, sealed and opened in place.
// Both hops run in the benchmark's own process, so its CPU time is the
// floor's whole cost (console and peer together). It is an anchor, not a
// protocol: the key is random per run and nothing is authenticated.

// floorFrame is the most plaintext one frame carries.
const floorFrame = 128 << 10

// floorForward listens on loopback and carries each connection to target
// through a second loopback TCP connection in AES-128-GCM frames. It
// returns the port to connect to.
func floorForward(b *testing.B, target string) string {
	key := make([]byte, 16)
	rand.Read(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		b.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	far := floorListen(b, func(c net.Conn) { // the "peer": frames in, plaintext to target
		t, err := net.Dial("tcp", target)
		if err != nil {
			c.Close()
			return
		}
		floorPipe(aead, c, t)
	})
	near := floorListen(b, func(c net.Conn) { // the "console": plaintext in, frames out
		f, err := net.Dial("tcp", far)
		if err != nil {
			c.Close()
			return
		}
		floorPipe(aead, f, c)
	})
	_, port, _ := net.SplitHostPort(near)
	return port
}

func floorListen(b *testing.B, serve func(net.Conn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return ln.Addr().String()
}

// floorPipe carries plain's bytes to framed sealed, and framed's frames to
// plain opened, with half-close, until both directions end. The two
// directions use distinct nonce spaces (the top bit of the counter).
func floorPipe(aead cipher.AEAD, framed, plain net.Conn) {
	var wg sync.WaitGroup
	wg.Go(func() {
		floorSeal(aead, framed, plain)
		framed.(*net.TCPConn).CloseWrite()
	})
	floorOpen(aead, plain, framed)
	plain.(*net.TCPConn).CloseWrite()
	wg.Wait()
	framed.Close()
	plain.Close()
}

// floorHeader is a frame's length (4 bytes) and nonce (12): each sealer
// draws a random 4-byte prefix and counts in the other 8, so the two
// directions under the run's one key do not repeat a nonce (an anchor's
// shortcut; a protocol would derive a key per direction).
const floorHeader = 4 + 12

func floorSeal(aead cipher.AEAD, dst io.Writer, src io.Reader) {
	buf := make([]byte, floorHeader+floorFrame+aead.Overhead())
	nonce := buf[4:floorHeader]
	rand.Read(nonce[:4])
	var seq uint64
	for {
		n, err := src.Read(buf[floorHeader : floorHeader+floorFrame])
		if n > 0 {
			seq++
			be.BigEndian.PutUint64(nonce[4:], seq)
			sealed := aead.Seal(buf[floorHeader:floorHeader], nonce, buf[floorHeader:floorHeader+n], nil)
			be.BigEndian.PutUint32(buf, uint32(len(sealed)))
			if _, werr := dst.Write(buf[:floorHeader+len(sealed)]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func floorOpen(aead cipher.AEAD, dst io.Writer, src io.Reader) {
	buf := make([]byte, floorHeader+floorFrame+aead.Overhead())
	for {
		if _, err := io.ReadFull(src, buf[:floorHeader]); err != nil {
			return
		}
		n := int(be.BigEndian.Uint32(buf))
		if n < aead.Overhead() || n > floorFrame+aead.Overhead() {
			return
		}
		body := buf[floorHeader : floorHeader+n]
		if _, err := io.ReadFull(src, body); err != nil {
			return
		}
		plain, err := aead.Open(body[:0], buf[4:floorHeader], body, nil)
		if err != nil {
			return
		}
		if _, err := dst.Write(plain); err != nil {
			return
		}
	}
}
