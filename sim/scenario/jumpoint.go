package scenario

// Jumpoints, file round trips and packet captures: what the jumpoint
// scenario needs beyond the relay's steps.

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	byteorder "encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jumpmesh/jumpmesh/sim/netlab"
)

// Where scenario jumpoints listen (TCP and QUIC, on every interface's
// address) and serve /healthz (on the host's loopback).
const (
	jumpointPort     = "4833"
	jumpointHTTPAddr = "127.0.0.1:4839"
)

// newMarker is a run's ${marker}: random, so it appears nowhere by chance.
func newMarker() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "jm-marker-" + hex.EncodeToString(b)
}

// publicAddr is the address the internet sees h come from: the public
// address of the first of its networks behind a NAT, its own on a public
// network, or zero.
func publicAddr(h *netlab.Host) netip.Addr {
	for _, n := range h.NICs() {
		if pa := n.Network.PublicAddr(); pa.IsValid() {
			return pa
		}
		if n.Network.Preset() == netlab.Public {
			return n.Addr
		}
	}
	return netip.Addr{}
}

// startJumpoint enrolls a jumpoint with an invite from the console and
// runs it. Flags for `jumpoint set` (an agentless allow list: --allow
// PREFIX:PORTS) are applied between the invite and the first run, so the
// jumpoint's first ACL holds them.
func (r *runner) startJumpoint(ctx context.Context, name string, set []string) (string, error) {
	console := r.hostOf(RoleConsole)
	var inv struct{ Code string }
	res, err := r.jm(ctx, console, &inv, "jumpoint", "invite", name, "--json")
	if err != nil {
		return res.output(), err
	}
	out := ""
	if len(set) > 0 {
		res, err := r.jm(ctx, console, nil, append([]string{"jumpoint", "set", name}, set...)...)
		if err != nil {
			return res.output(), err
		}
		out = strings.TrimSpace(res.output()) + "\n"
	}
	run, err := r.runJumpoint(ctx, name, inv.Code)
	return out + run, err
}

// runJumpoint runs the jumpoint daemon on host name, listening on its
// address on each of its networks; invite is for the first run. When a
// network forwards a port of its public address to the jumpoint, the
// jumpoint announces that address too, next to its own.
func (r *runner) runJumpoint(ctx context.Context, name, invite string) (string, error) {
	args := []string{"jumpoint", "run", "--data", filepath.Join(r.hostDir(name), "jumpoint"),
		"--coordinator", r.coordAddr, "--http-addr", jumpointHTTPAddr}
	var listen []string
	for _, n := range r.lab.Host(name).NICs() {
		listen = append(listen, "/ip4/"+n.Addr.String()+"/tcp/"+jumpointPort, "/ip4/"+n.Addr.String()+"/udp/"+jumpointPort+"/quic-v1")
	}
	announce := r.forwardedTo(name, jumpointPort)
	for _, a := range listen {
		args = append(args, "--listen", a)
	}
	if len(announce) > 0 {
		for _, a := range append(listen, announce...) {
			args = append(args, "--announce", a)
		}
	}
	if invite != "" {
		args = append(args, "--invite", invite)
	}
	p, addr, err := r.startDaemon(ctx, name, "jumpoint", args...)
	if p != nil {
		r.daemons[name] = p // teardown stops it, ready or not
	}
	if err != nil {
		return "", err
	}
	out := "jumpoint " + addr
	if len(announce) > 0 {
		out += "\nannounced through port forwards: " + strings.Join(announce, " ")
	}
	return out, nil
}

// forwardedTo is the public multiaddrs (TCP and QUIC) of the port
// forwards that send a network's public port to port on host.
func (r *runner) forwardedTo(host, port string) []string {
	var out []string
	for _, n := range r.sc.Networks {
		pub := r.lab.Network(n.Name).PublicAddr()
		for _, f := range n.Forwards {
			if f.Host != host || fmt.Sprint(cmp.Or(f.ToPort, f.Port)) != port || !pub.IsValid() {
				continue
			}
			out = append(out, fmt.Sprintf("/ip4/%s/tcp/%d", pub, f.Port), fmt.Sprintf("/ip4/%s/udp/%d/quic-v1", pub, f.Port))
		}
	}
	return out
}

// jumpointHealth is what a jumpoint's /healthz says (jumpoint.Health).
type jumpointHealth struct {
	Status  string `json:"status"`
	Name    string `json:"name"`
	Peers   int    `json:"acl_peers"`
	Online  int    `json:"peers_connected"`
	Tunnels int    `json:"tunnels"`
}

// health asks the jumpoint's /healthz, inside its host.
func (r *runner) health(ctx context.Context, name string) (jumpointHealth, error) {
	var h jumpointHealth
	resp, err := r.hostGet(ctx, name, "http://"+jumpointHTTPAddr+"/healthz")
	if err != nil {
		return h, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&h)
	return h, err
}

// expectJumpoint waits until n of the jumpoint's peers are connected to it
// (its /healthz), e.g. after the other jumpoint died. The output says how
// long after the last kill of a relay or jumpoint that was.
func (r *runner) expectJumpoint(ctx context.Context, name string, n int, within time.Duration) (string, error) {
	within = cmp.Or(within, defaultWithin)
	var h jumpointHealth
	var err error
	if poll(ctx, within, func(ctx context.Context) bool {
		h, err = r.health(ctx, name)
		return err == nil && h.Status == "ok" && h.Online >= n
	}) {
		return fmt.Sprintf("%s: %d of %d peers connected, %d tunnels open%s", name, h.Online, h.Peers, h.Tunnels, r.sinceKill()), nil
	}
	if err != nil {
		return "", fmt.Errorf("%s: /healthz: %v", name, err)
	}
	return "", fmt.Errorf("%s: %d peers connected after %v, want %d (status %s, %d tunnels)", name, h.Online, within, n, h.Status, h.Tunnels)
}

// sinceKill is ", 4.2 s after killing j-1" when the run killed a relay or
// jumpoint, else "".
func (r *runner) sinceKill() string {
	if len(r.killed) == 0 {
		return ""
	}
	k := r.killed[len(r.killed)-1]
	return fmt.Sprintf(", %.1f s after killing %s", time.Since(k.at).Seconds(), k.name)
}

// copyRoundTrip copies a file holding text to the peer (into its host's
// directory) and back with `jumpmesh cp`, and checks that both copies
// hold exactly what was sent.
func (r *runner) copyRoundTrip(ctx context.Context, console, peer, text string) (string, error) {
	r.cps++
	n := r.cps
	local := filepath.Join(r.hostDir(console), "cp")
	remoteDir := filepath.Join(r.hostDir(peer), "cp")
	for _, d := range []string{local, remoteDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
	}
	sent := filepath.Join(local, fmt.Sprintf("sent-%d.txt", n))
	back := filepath.Join(local, fmt.Sprintf("back-%d.txt", n))
	remote := filepath.Join(remoteDir, fmt.Sprintf("file-%d.txt", n))
	want := []byte(text + "\n")
	if err := os.WriteFile(sent, want, 0o644); err != nil {
		return "", err
	}
	var out []string
	for _, c := range [][2]string{{sent, peer + ":" + remote}, {peer + ":" + remote, back}} {
		res, err := r.jm(ctx, console, nil, "cp", c[0], c[1])
		out = append(out, strings.TrimSpace(res.output()))
		if err != nil {
			return strings.Join(out, "\n"), err
		}
	}
	for _, f := range []string{remote, back} {
		got, err := os.ReadFile(f)
		if err != nil {
			return strings.Join(out, "\n"), err
		}
		if !bytes.Equal(got, want) {
			return strings.Join(out, "\n"), fmt.Errorf("%s holds %q, want %q", f, got, want)
		}
	}
	return strings.Join(out, "\n"), nil
}

// capture is a running capture of a host's interfaces.
type capture struct {
	c    *netlab.Capture
	path string
}

// startCapture captures every interface of host into hosts/HOST/HOST.pcap
// until the lab closes (which flushes the file).
func (r *runner) startCapture(host string) (string, error) {
	path := filepath.Join(r.hostDir(host), host+".pcap")
	if r.captures[host] != nil {
		return "already capturing into " + path, nil
	}
	h := r.lab.Host(host)
	c, err := h.Capture(path)
	if err != nil {
		return "", err
	}
	r.captures[host] = &capture{c: c, path: path}
	var ifs []string
	for _, n := range h.NICs() {
		ifs = append(ifs, n.Name+" ("+n.Network.Name()+")")
	}
	return "capturing " + strings.Join(ifs, ", ") + " into " + path, nil
}

// expectCapture flushes host's capture and checks that some frame holds
// text (has) or that none does (lacks).
func (r *runner) expectCapture(host string, has bool, text string) (string, error) {
	c := r.captures[host]
	if c == nil {
		return "", fmt.Errorf("%s is not being captured (a capture step first, or --pcap)", host)
	}
	if err := c.c.Flush(); err != nil {
		return "", err
	}
	raw, err := os.ReadFile(c.path)
	if err != nil {
		return "", err
	}
	frames, matches := framesHolding(raw, []byte(text))
	out := fmt.Sprintf("%s: %d frames, %d bytes; %d hold %q", filepath.Base(c.path), frames, len(raw), matches, text)
	switch {
	case frames == 0:
		return out, fmt.Errorf("%s captured nothing", host)
	case has && matches == 0:
		return out, fmt.Errorf("no frame captured on %s holds %q", host, text)
	case !has && matches > 0:
		return out, fmt.Errorf("%d frames captured on %s hold %q in plain text", matches, host, text)
	}
	return out, nil
}

// framesHolding counts a pcap file's frames and those holding text.
func framesHolding(raw, text []byte) (frames, matches int) {
	const header, record = 24, 16
	for off := header; off+record <= len(raw); {
		kept := int(byteorder.LittleEndian.Uint32(raw[off+8:]))
		end := min(off+record+kept, len(raw))
		frames++
		if bytes.Contains(raw[off+record:end], text) {
			matches++
		}
		off = end
	}
	return frames, matches
}

// expectJumpointRelay waits until the coordinator lists a circuit through
// a relay among the jumpoint's addresses (`jumpoint list`): before that, a
// console behind a NAT cannot reach a jumpoint behind another.
func (r *runner) expectJumpointRelay(ctx context.Context, console, name string, within time.Duration) (string, error) {
	within = cmp.Or(within, defaultWithin)
	var circuits []string
	var res cmdResult
	if poll(ctx, within, func(ctx context.Context) bool {
		var list []struct {
			Name  string
			Addrs []string
		}
		var err error
		res, err = r.jm(ctx, console, &list, "jumpoint", "list", "--json")
		circuits = nil
		for _, j := range list {
			for _, a := range j.Addrs {
				if j.Name == name && strings.Contains(a, "/p2p-circuit") {
					circuits = append(circuits, a)
				}
			}
		}
		return err == nil && len(circuits) > 0
	}) {
		return name + " is reachable through " + strings.Join(circuits, ", "), nil
	}
	return res.output(), fmt.Errorf("the coordinator lists no relay circuit for %s after %v", name, within)
}
