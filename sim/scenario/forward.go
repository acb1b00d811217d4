package scenario

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// serve runs a small HTTP server on a plain host (in the lab's own
// process, on the host's network namespace): every path answers
// "hello from HOST". The lab closes it at teardown.
func (r *runner) serve(host, port string) (string, error) {
	ln, err := r.lab.Host(host).Listen("tcp4", ":"+port)
	if err != nil {
		return "", err
	}
	body := "hello from " + host + "\n"
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, body)
	})}
	go srv.Serve(ln) // ends when the lab closes the listener
	return "serving HTTP on " + ln.Addr().String(), nil
}

// forwardArgs is `forward PEER 0:TARGET -v`, or for a jumpoint the
// agentless `forward --via JUMPOINT 0:TARGET -v`.
func (r *runner) forwardArgs(via, target string) []string {
	if r.role(via) == RoleJumpoint {
		return []string{"forward", "--via", via, "0:" + target, "-v"}
	}
	return []string{"forward", via, "0:" + target, "-v"}
}

// fetchRefused runs the forward a fetch would and checks that it is
// refused: it ends before it listens, saying want.
func (r *runner) fetchRefused(ctx context.Context, console, via, target, want string) (string, error) {
	res, err := r.command(ctx, console, r.bin, r.forwardArgs(via, target)...)
	out := res.output()
	switch {
	case err != nil:
		return out, err
	case strings.Contains(res.stdout, "forwarding "):
		return out, fmt.Errorf("the forward to %s listened; want it refused", target)
	case res.code == 0:
		return out, fmt.Errorf("the forward to %s exited 0; want it refused", target)
	case !strings.Contains(out, want):
		return out, fmt.Errorf("the forward to %s was refused without saying %q: %s", target, want, lastLine(out))
	}
	return out, nil
}

// fetch runs `jumpmesh forward PEER 0:TARGET` (`forward --via` for a
// jumpoint) on the console, reads the local port it chose from its first
// line, fetches http://127.0.0.1:PORT/ inside the console's namespace
// through it, and stops the forward.
func (r *runner) fetch(ctx context.Context, console, peer, target string, st Step, expect string) (string, error) {
	h := r.lab.Host(console)
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	cmd := h.Command(context.Background(), r.bin, r.forwardArgs(peer, target)...)
	cmd.Env = r.env(console)
	var stderr lockedBuffer // the forward writes it while we read it
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	p, err := h.Start(cmd)
	if err != nil {
		return "", err
	}
	defer p.Stop(stopGrace)
	local := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			// forwarding 127.0.0.1:PORT -> PEER -> TARGET
			if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "forwarding" {
				local <- f[1]
			}
		}
		close(local)
	}()
	var addr string
	select {
	case a, ok := <-local:
		if !ok {
			return stderr.String(), fmt.Errorf("forward ended before it listened: %s", lastLine(stderr.String()))
		}
		addr = a
	case <-ctx.Done():
		return stderr.String(), fmt.Errorf("forward did not listen within %v", commandTimeout)
	}
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
		return h.Dial(ctx, nil, network, a)
	}}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return stderr.String(), fmt.Errorf("GET through the forward: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	out := string(body) + stderr.String()
	switch {
	case err != nil:
		return out, err
	case resp.StatusCode != http.StatusOK:
		return out, fmt.Errorf("GET through the forward: %s", resp.Status)
	case !strings.Contains(string(body), expect):
		return out, fmt.Errorf("the page lacks %q", expect)
	}
	return out, nil
}

// restart stops and starts a peer (its init-script), the coordinator or
// a relay.
func (r *runner) restart(ctx context.Context, name string) (string, error) {
	if _, ok := r.peers[name]; ok {
		return r.initScript(ctx, name, "restart")
	}
	out, err := r.lifecycle(ctx, "stop", name)
	if err != nil {
		return out, err
	}
	more, err := r.lifecycle(ctx, "start", name)
	return strings.TrimSpace(out + "\n" + more), err
}

// lockedBuffer is a strings.Builder safe for one writer and one reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
