package console_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/channel"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// forwardListener is `jumpmesh forward LPORT:HOST:PORT` in miniature: a
// local listener that carries each accepted connection over a new channel.
func (p *channelPair) forwardListener(tb testing.TB, targetHost string, targetPort int) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	tb.Cleanup(func() { cancel(); _ = ln.Close(); wg.Wait() })
	open := &pb.ChannelOpen{Kind: &pb.ChannelOpen_Forward{Forward: &pb.ForwardOpen{Host: targetHost, Port: uint32(targetPort)}}}
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				ch, _, err := channel.Open(ctx, p.console, p.peerID, open)
				if err != nil {
					tb.Errorf("opening a forward channel: %v", err)
					_ = conn.Close()
					return
				}
				if _, _, err := console.Forward(ctx, ch, conn); err != nil && ctx.Err() == nil {
					tb.Errorf("forward: %v", err)
				}
			})
		}
	})
	return ln.Addr().String()
}

func portOf(tb testing.TB, addr string) int {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		tb.Fatal(err)
	}
	n, _ := strconv.Atoi(port)
	return n
}

func TestForwardCarriesHTTPOnConcurrentConnections(t *testing.T) {
	payload := bytes.Repeat([]byte("jumpmesh "), 40_000) // 360 kB: several windows
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Got", strconv.Itoa(len(body)))
		_, _ = w.Write(payload)
	}))
	defer srv.Close()
	p := newChannelPair(t)
	local := p.forwardListener(t, "localhost", portOf(t, srv.Listener.Addr().String()))

	tr := &http.Transport{MaxIdleConnsPerHost: 8}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 4 {
				req := bytes.Repeat([]byte{'x'}, 1000*(i+1)+j)
				resp, err := client.Post("http://"+local+"/", "text/plain", bytes.NewReader(req))
				if err != nil {
					t.Errorf("request %d.%d: %v", i, j, err)
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || !bytes.Equal(body, payload) || resp.Header.Get("X-Got") != strconv.Itoa(len(req)) {
					t.Errorf("request %d.%d: %d bytes back (%v), server got %s of %d", i, j, len(body), err, resp.Header.Get("X-Got"), len(req))
				}
			}
		})
	}
	wg.Wait()
	tr.CloseIdleConnections()
	waitUntil(t, "the forwarded connections to end", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.forwarded) >= 2
	})
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, err := range p.forwarded {
		if err != nil {
			t.Errorf("peer side of a forward: %v", err)
		}
	}
}

// A client that closes its sending half still gets the server's answer,
// which the server only writes once it has read to the end.
func TestForwardHalfClose(t *testing.T) {
	srv, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		c, err := srv.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		fmt.Fprintf(c, "got %d", n)
	}()
	p := newChannelPair(t)
	local := p.forwardListener(t, "127.0.0.1", portOf(t, srv.Addr().String()))

	c, err := net.Dial("tcp", local)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write(make([]byte, 300_000)); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	answer, err := io.ReadAll(c)
	if err != nil || string(answer) != "got 300000" {
		t.Errorf("answer %q, %v; want \"got 300000\"", answer, err)
	}
}

// A target the peer cannot reach is a catalog error before any byte
// flows, and the local connection is closed.
func TestForwardUnreachableTargetIsReported(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := portOf(t, ln.Addr().String())
	ln.Close() // nothing listens there now

	p := newChannelPair(t)
	ch := p.open(t, &pb.ChannelOpen{Kind: &pb.ChannelOpen_Forward{Forward: &pb.ForwardOpen{Host: "127.0.0.1", Port: uint32(port)}}})
	local, remote := net.Pipe()
	defer remote.Close()
	in, out, err := console.Forward(context.Background(), ch, local)
	if catalog.CodeOf(err) != catalog.CodeForwardUnreachable || !bytes.Contains([]byte(err.Error()), []byte("could not connect to 127.0.0.1:"+strconv.Itoa(port))) {
		t.Errorf("Forward to a closed port: %v (code %s)", err, catalog.CodeOf(err))
	}
	if in != 0 || out != 0 {
		t.Errorf("%d/%d bytes moved", in, out)
	}
	if _, err := remote.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("local connection not closed: %v", err)
	}
}
