package channel

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// tcpPair is two ends of a loopback TCP connection.
func tcpPair(t testing.TB) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// acceptAsync runs AcceptBulk on conn and delivers its outcome.
func acceptAsync(conn net.Conn, offers *BulkOffers) <-chan acceptResult {
	ch := make(chan acceptResult, 1)
	go func() {
		c, err := AcceptBulk(conn, offers)
		ch <- acceptResult{c, err}
	}()
	return ch
}

type acceptResult struct {
	c   *BulkConn
	err error
}

// bulkPair is a console and a peer end of a bulk connection made with a
// fresh offer.
func bulkPair(t *testing.T) (console, peer *BulkConn) {
	t.Helper()
	var offers BulkOffers
	o := NewBulkOffer()
	offers.Add(o, time.Minute)
	a, b := tcpPair(t)
	res := acceptAsync(b, &offers)
	console, err := DialBulk(a, o)
	if err != nil {
		t.Fatal(err)
	}
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.c.Ticket != o.Ticket || offers.Len() != 0 {
		t.Fatalf("accepted ticket %x, %d offers left", r.c.Ticket, offers.Len())
	}
	return console, r.c
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func TestBulkCarriesBothWaysWithHalfClose(t *testing.T) {
	console, peer := bulkPair(t)
	up := randomBytes(3*BulkFrame + 12345)
	down := randomBytes(BulkFrame/2 + 7)
	done := make(chan error, 1)
	go func() {
		got, err := io.ReadAll(peer) // until the console's end frame
		if err == nil && !bytes.Equal(got, up) {
			err = errors.New("the peer read other bytes")
		}
		if err == nil {
			_, err = peer.Write(down) // after the console's half-close
		}
		if err == nil {
			err = peer.CloseWrite()
		}
		done <- err
	}()
	if _, err := console.Write(up); err != nil {
		t.Fatal(err)
	}
	if err := console.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	// Small reads: a frame larger than the buffer is opened in place and
	// handed out in pieces.
	var got []byte
	buf := make([]byte, 1000)
	for {
		n, err := console.Read(buf)
		got = append(got, buf[:n]...)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, down) {
		t.Fatalf("the console read %d bytes, want %d", len(got), len(down))
	}
}

// TestBulkSpliceForwards: a forward made of bulk connections — client →
// console splice → bulk → peer splice → echo target — with half-close.
func TestBulkSpliceForwards(t *testing.T) {
	console, peer := bulkPair(t)
	target, peerSide := tcpPair(t)
	client, consoleSide := tcpPair(t)
	go func() { // the target echoes until the client's half-close arrives
		_, _ = io.Copy(target, target)
		_ = target.CloseWrite()
	}()
	ctx := context.Background()
	peerDone := make(chan error, 1)
	go func() { _, _, err := peer.Splice(ctx, peerSide); peerDone <- err }()
	consoleDone := make(chan error, 1)
	go func() { _, _, err := console.Splice(ctx, consoleSide); consoleDone <- err }()
	msg := randomBytes(1 << 20)
	go func() { _, _ = client.Write(msg); _ = client.CloseWrite() }()
	got, err := io.ReadAll(client)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo through the bulk forward: %d bytes of %d, %v", len(got), len(msg), err)
	}
	if err := <-consoleDone; err != nil {
		t.Fatalf("console splice: %v", err)
	}
	if err := <-peerDone; err != nil {
		t.Fatalf("peer splice: %v", err)
	}
}

// TestBulkRefusesStrangersAndOtherConsoles is the attack test of the bulk
// connection's acceptor: a stranger with no offer, a console presenting
// another forward's ticket (seen on the wire) with a secret of its own, an
// offer from another peer, a replay of a used offer and an expired one are
// all refused; the rightful console still gets its connection afterwards.
func TestBulkRefusesStrangersAndOtherConsoles(t *testing.T) {
	var offers BulkOffers
	mine := NewBulkOffer()
	offers.Add(mine, time.Minute)
	refused := func(name string, o BulkOffer, raw []byte) {
		t.Helper()
		a, b := tcpPair(t)
		res := acceptAsync(b, &offers)
		var dialErr error
		if raw != nil {
			_, _ = a.Write(raw)
			_ = a.CloseWrite()
		} else {
			_, dialErr = DialBulk(a, o)
		}
		r := <-res
		if !errors.Is(r.err, ErrBulkRefused) {
			t.Fatalf("%s: accepted (%v)", name, r.err)
		}
		if raw == nil && dialErr == nil {
			t.Fatalf("%s: the dialer thinks it is connected", name)
		}
	}
	refused("a stranger's garbage", BulkOffer{}, []byte("GET / HTTP/1.1\r\n\r\n"))
	refused("a stranger's made-up offer", NewBulkOffer(), nil)
	stolen := NewBulkOffer()
	stolen.Ticket = mine.Ticket // the ticket crosses the network in clear
	refused("another console with the ticket seen on the wire", stolen, nil)
	var otherPeer BulkOffers
	theirs := NewBulkOffer()
	otherPeer.Add(theirs, time.Minute)
	refused("an offer another peer made", theirs, nil)
	if offers.Len() != 1 {
		t.Fatalf("the refusals took the offer: %d pending", offers.Len())
	}

	// The rightful console connects once; the same offer again is a replay.
	a, b := tcpPair(t)
	res := acceptAsync(b, &offers)
	if _, err := DialBulk(a, mine); err != nil {
		t.Fatalf("the rightful console: %v", err)
	}
	if r := <-res; r.err != nil {
		t.Fatal(r.err)
	}
	refused("a replay of a used offer", mine, nil)

	// An offer past its time.
	now := time.Now()
	offers.now = func() time.Time { return now }
	late := NewBulkOffer()
	offers.Add(late, time.Second)
	now = now.Add(2 * time.Second)
	refused("an expired offer", late, nil)
}

// TestBulkDialRefusesAnImpostor: something that answers the console
// without the offer's secret (the network, a relay) is not taken for the
// peer.
func TestBulkDialRefusesAnImpostor(t *testing.T) {
	a, b := tcpPair(t)
	go func() {
		buf := make([]byte, 4096)
		_, _ = b.Read(buf)
		_, _ = b.Write(buf[BulkTicketSize:]) // reflects the console's own hello
		_, _ = b.Write(randomBytes(64))
	}()
	if _, err := DialBulk(a, NewBulkOffer()); err == nil {
		t.Fatal("DialBulk took a reflected hello for the peer's")
	}
}

// consoleFrames is what a console sends for o: the ticket with its hello,
// the data in frames of frame bytes, and the end frame, one slice each.
func consoleFrames(t *testing.T, o BulkOffer, data []byte, frame int) [][]byte {
	toPeer, toConsole, err := o.keys()
	if err != nil {
		t.Fatal(err)
	}
	c := newBulkConn(nil, o.Ticket, toPeer, toConsole)
	out := [][]byte{c.seal(o.Ticket[:], []byte(bulkHelloConsole))}
	for len(data) > 0 {
		m := min(frame, len(data))
		out = append(out, c.seal(nil, data[:m]))
		data = data[m:]
	}
	return append(out, c.seal(nil, nil))
}

// TestBulkDetectsTamperingAndTruncation: whoever carries the connection
// cannot change a byte, replay, reorder, drop or reflect frames, or end
// the stream early: the reader gets an error, never altered bytes or a
// clean EOF.
func TestBulkDetectsTamperingAndTruncation(t *testing.T) {
	data := randomBytes(4 * 1000)
	cases := map[string]func(f [][]byte) [][]byte{
		"nothing changed (control)": func(f [][]byte) [][]byte { return f },
		"a flipped bit":             func(f [][]byte) [][]byte { f[2] = bytes.Clone(f[2]); f[2][len(f[2])/2] ^= 1; return f },
		"a flipped length":          func(f [][]byte) [][]byte { f[2] = bytes.Clone(f[2]); f[2][3] ^= 1; return f },
		"a frame replayed":          func(f [][]byte) [][]byte { return append(f[:3:3], f[2:]...) },
		"frames reordered":          func(f [][]byte) [][]byte { f[2], f[3] = f[3], f[2]; return f },
		"a frame dropped":           func(f [][]byte) [][]byte { return append(f[:2:2], f[3:]...) },
		"the end frame dropped":     func(f [][]byte) [][]byte { return f[:len(f)-1] },
		"cut inside a frame":        func(f [][]byte) [][]byte { return append(f[:2:2], f[2][:len(f[2])/2]) },
		"the hello reflected as data": func(f [][]byte) [][]byte {
			return append(f[:2:2], append([][]byte{f[0][BulkTicketSize:]}, f[2:]...)...)
		},
	}
	for name, change := range cases {
		t.Run(name, func(t *testing.T) {
			var offers BulkOffers
			o := NewBulkOffer()
			offers.Add(o, time.Minute)
			wire, peerEnd := tcpPair(t)
			res := acceptAsync(peerEnd, &offers)
			go io.Copy(io.Discard, wire) // the peer's hello
			frames := change(consoleFrames(t, o, data, 1000))
			go func() {
				for _, f := range frames {
					if _, err := wire.Write(f); err != nil {
						return
					}
				}
				_ = wire.CloseWrite()
			}()
			r := <-res
			if r.err != nil {
				t.Fatalf("the hello was not changed, yet: %v", r.err)
			}
			got, err := io.ReadAll(r.c)
			if !bytes.HasPrefix(data, got) {
				t.Fatalf("the peer read altered bytes")
			}
			control := name == "nothing changed (control)"
			if control && (err != nil || !bytes.Equal(got, data)) {
				t.Fatalf("control: %d bytes, %v", len(got), err)
			}
			if !control && err == nil {
				t.Fatalf("read %d bytes and a clean end", len(got))
			}
		})
	}
}

// BenchmarkBulkVsChannel carries 128 MiB each way per round through a
// forward made of a channel (libp2p: TLS 1.3 and yamux on loopback TCP,
// as BenchmarkSpliceBuffer) and through one made of a bulk connection, in
// alternating rounds of one run. Everything runs in this process (client,
// both ends, sink), so the CPU per GiB is the whole path's, the same
// sockets in both; the difference is what the bulk connection saves.
func BenchmarkBulkVsChannel(b *testing.B) {
	sink := bulkSink(b)
	console, pid := pairWith(b, func(c *Channel, open *pb.ChannelOpen) {
		_ = c.Ready("s", nil)
		conn, err := net.Dial("tcp", sink)
		if err != nil {
			_ = c.SendStatus(err)
			return
		}
		_ = c.SendStatus(nil)
		_, _, _ = c.Splice(context.Background(), conn)
	})
	var offers BulkOffers
	bulkLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = bulkLn.Close() })
	go func() { // the peer's bulk listener
		for {
			conn, err := bulkLn.Accept()
			if err != nil {
				return
			}
			go func() {
				bc, err := AcceptBulk(conn, &offers)
				if err != nil {
					return
				}
				t, err := net.Dial("tcp", sink)
				if err != nil {
					_ = bc.Close()
					return
				}
				_, _, _ = bc.Splice(context.Background(), t)
			}()
		}
	}()
	viaChannel := func(conn net.Conn) error {
		c, _, err := Open(context.Background(), console, pid, &pb.ChannelOpen{})
		if err == nil {
			err = c.ReadStatus()
		}
		if err != nil {
			_ = conn.Close()
			return err
		}
		_, _, err = c.Splice(context.Background(), conn)
		return err
	}
	viaBulk := func(conn net.Conn) error {
		o := NewBulkOffer() // the peer's offer, as if received on the channel
		offers.Add(o, time.Minute)
		tc, err := net.Dial("tcp", bulkLn.Addr().String())
		if err != nil {
			_ = conn.Close()
			return err
		}
		bc, err := DialBulk(tc, o)
		if err != nil {
			_ = conn.Close()
			return err
		}
		_, _, err = bc.Splice(context.Background(), conn)
		return err
	}
	const size = 128 << 20
	var chUp, chDown, bkUp, bkDown []float64
	var chCPU, bkCPU time.Duration
	for b.Loop() {
		c0 := processCPU(b)
		u, d := timeForward(b, viaChannel, size)
		c1 := processCPU(b)
		chUp, chDown, chCPU = append(chUp, u), append(chDown, d), chCPU+c1-c0
		u, d = timeForward(b, viaBulk, size)
		bkUp, bkDown, bkCPU = append(bkUp, u), append(bkDown, d), bkCPU+processCPU(b)-c1
	}
	gib := float64(2*size*len(chUp)) / (1 << 30)
	b.ReportMetric(median(chUp), "channel-up-MB/s")
	b.ReportMetric(median(chDown), "channel-down-MB/s")
	b.ReportMetric(median(bkUp), "bulk-up-MB/s")
	b.ReportMetric(median(bkDown), "bulk-down-MB/s")
	b.ReportMetric(chCPU.Seconds()/gib, "channel-CPU-s/GiB")
	b.ReportMetric(bkCPU.Seconds()/gib, "bulk-CPU-s/GiB")
	b.ReportMetric(chCPU.Seconds()/bkCPU.Seconds(), "channel÷bulk-CPU")
}

// processCPU is this process's user + system time so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// timeForward carries size bytes each way through carry, which gets the
// accepted end of a local TCP connection as the CLI's listener would, and
// returns the MB/s of each direction.
func timeForward(b *testing.B, carry func(net.Conn) error, size int64) (up, down float64) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	carried := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			carried <- err
			return
		}
		carried <- carry(conn)
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	start := time.Now()
	if _, err := io.CopyN(client, zeroReader{}, size); err != nil {
		b.Fatal(err)
	}
	_ = client.(*net.TCPConn).CloseWrite()
	var first [1]byte
	if _, err := io.ReadFull(client, first[:]); err != nil { // the sink has read it all
		b.Fatal(err)
	}
	mid := time.Now()
	if n, err := io.Copy(io.Discard, client); err != nil || n+1 != size {
		b.Fatalf("%d bytes back of %d: %v", n+1, size, err)
	}
	end := time.Now()
	if err := <-carried; err != nil {
		b.Fatal(err)
	}
	mb := float64(size) / 1e6
	return mb / mid.Sub(start).Seconds(), mb / end.Sub(mid).Seconds()
}
