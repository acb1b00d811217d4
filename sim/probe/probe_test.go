package probe

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func listenUDP(t *testing.T) net.PacketConn {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

func serve(t *testing.T, pc net.PacketConn) netip.AddrPort {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- ServeUDP(pc) }()
	t.Cleanup(func() {
		pc.Close()
		if err := <-done; err != nil {
			t.Errorf("ServeUDP: %v", err)
		}
	})
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

func TestUDPSeesSource(t *testing.T) {
	srv := serve(t, listenUDP(t))
	cl := listenUDP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	seen, err := UDP(ctx, cl, srv)
	if err != nil {
		t.Fatal(err)
	}
	if want := cl.LocalAddr().(*net.UDPAddr).AddrPort(); seen != want {
		t.Errorf("seen %v, want %v", seen, want)
	}
}

// dropFirst loses the first datagram it reads, like a lossy path.
type dropFirst struct {
	net.PacketConn
	n atomic.Int32
}

func (d *dropFirst) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, a, err := d.PacketConn.ReadFrom(p)
		if err != nil || d.n.Add(1) > 1 {
			return n, a, err
		}
	}
}

func TestUDPRetries(t *testing.T) {
	srv := serve(t, &dropFirst{PacketConn: listenUDP(t)})
	cl := listenUDP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := UDP(ctx, cl, srv); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < RetryInterval {
		t.Errorf("answered after %v: the first probe was not lost?", d)
	}
}

func TestUDPIgnoresStrangers(t *testing.T) {
	srv := serve(t, listenUDP(t))
	cl := listenUDP(t)
	// Garbage to the server is ignored; garbage to the client too.
	if _, err := cl.WriteTo([]byte("hello"), net.UDPAddrFromAddrPort(srv)); err != nil {
		t.Fatal(err)
	}
	other := listenUDP(t)
	if _, err := other.WriteTo([]byte("JMPROBE1 wrongtoken 1.2.3.4:5"), cl.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	seen, err := UDP(ctx, cl, srv)
	if err != nil || seen.Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("seen %v, %v", seen, err)
	}
}

func TestUDPGivesUp(t *testing.T) {
	cl := listenUDP(t)
	silent := listenUDP(t) // nobody answers
	ctx, cancel := context.WithTimeout(context.Background(), RetryInterval/2)
	defer cancel()
	if _, err := UDP(ctx, cl, silent.LocalAddr().(*net.UDPAddr).AddrPort()); err == nil {
		t.Fatal("a probe with no server succeeded")
	}
}

func TestTCPSeesSource(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ServeTCP(ln) }()
	defer func() {
		ln.Close()
		if err := <-done; err != nil {
			t.Errorf("ServeTCP: %v", err)
		}
	}()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	seen, err := TCP(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if want := c.LocalAddr().(*net.TCPAddr).AddrPort(); seen != want {
		t.Errorf("seen %v, want %v", seen, want)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"JMPROBE1 abc", "JMPROBE1 abc 1.2.3.4:5", "JMPROBE1 - [::1]:80", "JMPROBE1", "", "JMPROBE1 a b c d",
		"JMPROBE1 abc 999.1.1.1:5", "JMPROBE1 abc 1.2.3.4:99999",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if tok, ok := parseRequest(b); ok && tok == "" {
			t.Errorf("empty token accepted from %q", b)
		}
		if ap, ok := parseReply(b, "abc"); ok && !ap.IsValid() {
			t.Errorf("invalid address accepted from %q", b)
		}
	})
}
