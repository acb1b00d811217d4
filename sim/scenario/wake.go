package scenario

// Wake-on-LAN in the lab: a host that sleeps (suspend), the card that
// wakes it (netlab's wake listener), what each host sent, and what the
// coordinator's audit says it asked.

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/wake"
	"github.com/jumpmesh/jumpmesh/sim/netlab"
	"github.com/jumpmesh/jumpmesh/sim/results"
)

// wakeLab is a run's Wake-on-LAN state.
type wakeLab struct {
	mu       sync.Mutex
	sleepers map[string]*sleeper             // by host: the last suspend of each
	sent     map[string]*netlab.WakeListener // by host: what each peer and jumpoint sends
	cmds     []wakeCmd                       // console commands that wake a peer, in order
	macHost  map[string]string               // every lab host's MACs
	ipHost   map[netip.Addr]string
	stop     chan struct{} // closed at teardown: no more restarts
	wg       sync.WaitGroup
}

// sleeper is one suspend of a host.
type sleeper struct {
	host     string
	l        *netlab.WakeListener
	since    time.Time
	rec      int // its entry in res.Wakes
	password []byte
	done     chan struct{} // closed once woken and started again (or at teardown)
	err      error         // the restart's, valid after done
}

// wakeCmd is a console command that asks to wake target.
type wakeCmd struct {
	target, step string
	line         int // the step's line in the file
	at           time.Time
	requested    time.Time // `wake --json`'s requested_at: when it sent the request
}

// startWakeWatch maps every host's MACs and addresses to its name and
// starts a listener on each peer and jumpoint host that records the magic
// packets it sends (expect-wake-sent, expect-no-wake-sent).
func (r *runner) startWakeWatch() error {
	w := &wakeLab{sleepers: map[string]*sleeper{}, sent: map[string]*netlab.WakeListener{},
		macHost: map[string]string{}, ipHost: map[netip.Addr]string{}, stop: make(chan struct{})}
	r.wake = w
	for _, h := range r.sc.Hosts {
		lh := r.lab.Host(h.Name)
		macs, err := lh.MACs()
		if err != nil {
			return err
		}
		for _, m := range macs {
			w.macHost[m.String()] = h.Name
		}
		for _, n := range lh.NICs() {
			w.ipHost[n.Addr] = h.Name
		}
		if h.Role != RolePeer && h.Role != RoleJumpoint {
			continue
		}
		l, err := lh.ListenWake(netlab.WakeConfig{})
		if err != nil {
			return err
		}
		w.sent[h.Name] = l
	}
	return nil
}

// stopWake ends the wake handling before teardown kills the peers: no
// restart may race with it. It fills in each sleep's record.
func (r *runner) stopWake() {
	if r.wake == nil {
		return
	}
	close(r.wake.stop)
	r.wake.wg.Wait()
	r.wake.mu.Lock()
	defer r.wake.mu.Unlock()
	for _, s := range r.wake.sleepers {
		r.tallyWake(s)
	}
}

// hostByPacket names the host that sent p.
func (w *wakeLab) hostByPacket(p netlab.WakePacket) string {
	if h := w.macHost[p.SrcMAC.String()]; h != "" {
		return h
	}
	if h := w.ipHost[p.SrcIP]; h != "" {
		return h
	}
	return p.SrcMAC.String()
}

// suspend puts a peer's host to sleep: its card listens for magic packets
// (with password, a SecureOn password), then the peer is stopped with its
// init-script. A magic packet that wakes the card starts the peer again
// with the same init-script.
func (r *runner) suspend(ctx context.Context, host, password string) (string, error) {
	if _, ok := r.peers[host]; !ok {
		return "", fmt.Errorf("%s is not installed", host)
	}
	pw, err := wake.ParsePassword(password)
	if err != nil {
		return "", err
	}
	w := r.wake
	w.mu.Lock()
	old := w.sleepers[host]
	w.mu.Unlock()
	if old != nil {
		select {
		case <-old.done:
			w.mu.Lock()
			r.tallyWake(old) // its last count, before its card goes
			w.mu.Unlock()
			old.l.Close()
		default:
			return "", fmt.Errorf("%s is already asleep (since %s)", host, old.since.Format(time.TimeOnly))
		}
	}
	h := r.lab.Host(host)
	mac, err := h.MAC()
	if err != nil {
		return "", err
	}
	// The card listens before the peer stops: nothing slips between.
	l, err := h.ListenWake(netlab.WakeConfig{Password: pw})
	if err != nil {
		return "", err
	}
	out, err := r.initScript(ctx, host, "stop")
	if err != nil {
		l.Close()
		return out, err
	}
	s := &sleeper{host: host, l: l, since: time.Now(), password: pw, done: make(chan struct{})}
	r.resMu.Lock()
	s.rec = len(r.res.Wakes)
	r.res.Wakes = append(r.res.Wakes, results.Wake{Host: host, Suspended: s.since.UTC(), SecureOn: len(pw) > 0})
	r.resMu.Unlock()
	w.mu.Lock()
	w.sleepers[host] = s
	w.mu.Unlock()
	w.wg.Go(func() { r.sleep(s) })
	msg := fmt.Sprintf("%s asleep: %s; its card (%s on %s) waits for a magic packet", host, strings.TrimSpace(out), mac, h.Interface())
	if len(pw) > 0 {
		msg += " with SecureOn " + wake.FormatPassword(pw)
	}
	return msg, nil
}

// sleep waits for the card to wake, then starts the peer again as the
// install step did, and records the wake.
func (r *runner) sleep(s *sleeper) {
	defer close(s.done)
	select {
	case <-s.l.Woken():
	case <-r.wake.stop:
		return
	}
	p, _ := s.l.Wake()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	_, err := r.initScript(ctx, s.host, "start")
	started := time.Now()
	s.err = err
	r.wake.mu.Lock()
	cmd, hasCmd := r.wakeCommand(s, p.At)
	waker := r.wake.hostByPacket(p)
	r.wake.mu.Unlock()
	r.resMu.Lock()
	defer r.resMu.Unlock()
	rec := &r.res.Wakes[s.rec]
	at := p.At.UTC()
	rec.Woken, rec.PacketAt, rec.Packet, rec.Waker = true, &at, p.String(), waker
	rec.RestartMS = ms(started.Sub(p.At))
	if hasCmd {
		cat := cmd.at.UTC()
		rec.Command, rec.CommandAt, rec.ToPacketMS = cmd.step, &cat, ms(p.At.Sub(cmd.at))
		if !cmd.requested.IsZero() {
			rec.RequestToPacketMS = ms(p.At.Sub(cmd.requested))
		}
	}
	if err != nil {
		rec.Error = "starting the peer again: " + err.Error()
	}
}

// wakeCommand is the last console command naming the sleeper that
// started while it slept, before at. The caller holds r.wake.mu.
func (r *runner) wakeCommand(s *sleeper, at time.Time) (wakeCmd, bool) {
	for i := len(r.wake.cmds) - 1; i >= 0; i-- {
		if c := r.wake.cmds[i]; c.target == s.host && c.at.After(s.since) && c.at.Before(at) {
			return c, true
		}
	}
	return wakeCmd{}, false
}

// noteWakeCommand records a console command that asks to wake a peer:
// `wake PEER`, or jump, forward or cp with --wake. The peer is the first
// argument naming a peer host (cp: PEER:PATH). A step that tries again
// (within) keeps only its latest try.
func (r *runner) noteWakeCommand(line int, args []string) {
	if len(args) == 0 || r.wake == nil {
		return
	}
	cut := len(args)
	if i := slices.Index(args, "--"); i >= 0 {
		cut = i
	}
	words := args[:cut]
	if words[0] != "wake" && !slices.Contains(words, "--wake") {
		return
	}
	for _, a := range words[1:] {
		name, _, _ := strings.Cut(a, ":")
		if r.role(name) != RolePeer {
			continue
		}
		c := wakeCmd{target: name, step: strings.Join(args, " "), line: line, at: time.Now()}
		r.wake.mu.Lock()
		defer r.wake.mu.Unlock()
		if n := len(r.wake.cmds); n > 0 && r.wake.cmds[n-1].line == line {
			r.wake.cmds[n-1] = c
			return
		}
		r.wake.cmds = append(r.wake.cmds, c)
		return
	}
}

// attempts lists the wake commands naming a sleeper while it slept, each
// with the magic packets for it that came before the next command. The
// caller holds r.wake.mu.
func (r *runner) attempts(s *sleeper, mine map[string]bool, woke *time.Time) []results.WakeAttempt {
	var cmds []wakeCmd
	for _, c := range r.wake.cmds {
		if c.target == s.host && c.at.After(s.since) && (woke == nil || c.at.Before(*woke)) {
			cmds = append(cmds, c)
		}
	}
	packets := s.l.Packets()
	var out []results.WakeAttempt
	for i, c := range cmds {
		a := results.WakeAttempt{Command: c.step, At: c.at.UTC()}
		for _, p := range packets {
			if p.Outgoing || !mine[p.MAC.String()] || !p.At.After(c.at) || i+1 < len(cmds) && !p.At.Before(cmds[i+1].at) {
				continue
			}
			if a.Packets == 0 {
				a.ToPacketMS = ms(p.At.Sub(c.at))
			}
			a.Packets++
		}
		out = append(out, a)
	}
	return out
}

// sleeperOf returns the host's last suspend.
func (r *runner) sleeperOf(host string) (*sleeper, error) {
	r.wake.mu.Lock()
	defer r.wake.mu.Unlock()
	s := r.wake.sleepers[host]
	if s == nil {
		return nil, fmt.Errorf("%s was never suspended", host)
	}
	return s, nil
}

// tallyWake counts the magic packets for the host that reached its card
// while it slept and after, and who sent them. The caller holds
// r.wake.mu.
func (r *runner) tallyWake(s *sleeper) results.Wake {
	macs, _ := r.lab.Host(s.host).MACs()
	mine := map[string]bool{}
	for _, m := range macs {
		mine[m.String()] = true
	}
	r.resMu.Lock()
	defer r.resMu.Unlock()
	rec := &r.res.Wakes[s.rec]
	rec.Packets, rec.WrongPassword, rec.Senders = 0, 0, nil
	rec.Attempts = r.attempts(s, mine, rec.PacketAt)
	for _, p := range s.l.Packets() {
		if p.Outgoing || !mine[p.MAC.String()] {
			continue
		}
		rec.Packets++
		if by := r.wake.hostByPacket(p); !slices.Contains(rec.Senders, by) {
			rec.Senders = append(rec.Senders, by)
		}
		if len(s.password) > 0 && !bytes.Equal(p.Password, s.password) {
			rec.WrongPassword++
		}
	}
	return *rec
}

// expectAwake waits until the host's card was woken and its peer started
// again.
func (r *runner) expectAwake(ctx context.Context, host string, within time.Duration) (string, error) {
	s, err := r.sleeperOf(host)
	if err != nil {
		return "", err
	}
	within = cmp.Or(within, defaultWithin)
	t := time.NewTimer(within)
	defer t.Stop()
	select {
	case <-s.done:
	case <-t.C:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	r.wake.mu.Lock()
	rec := r.tallyWake(s)
	r.wake.mu.Unlock()
	if !rec.Woken {
		return describeSleep(rec), fmt.Errorf("%s still asleep after %v", host, within)
	}
	if s.err != nil {
		return describeSleep(rec), s.err
	}
	return describeSleep(rec), nil
}

// expectAsleep checks that no magic packet wakes the host for d.
func (r *runner) expectAsleep(ctx context.Context, host string, d time.Duration) (string, error) {
	s, err := r.sleeperOf(host)
	if err != nil {
		return "", err
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-s.l.Woken():
	case <-t.C:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	select {
	case <-s.l.Woken():
		<-s.done
		r.wake.mu.Lock()
		rec := r.tallyWake(s)
		r.wake.mu.Unlock()
		return describeSleep(rec), fmt.Errorf("%s woke up: %s", host, rec.Packet)
	default:
	}
	r.wake.mu.Lock()
	rec := r.tallyWake(s)
	r.wake.mu.Unlock()
	return fmt.Sprintf("%s slept through %v: ", host, d) + describeSleep(rec), nil
}

// describeSleep says what reached a sleeper and what woke it.
func describeSleep(w results.Wake) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d magic packets for %s", w.Packets, w.Host)
	if len(w.Senders) > 0 {
		fmt.Fprintf(&b, " from %s", strings.Join(w.Senders, ", "))
	}
	if w.WrongPassword > 0 {
		fmt.Fprintf(&b, ", %d with the wrong SecureOn password", w.WrongPassword)
	}
	for _, a := range w.Attempts {
		if a.Packets > 0 {
			fmt.Fprintf(&b, "; `%s`: %d packets, the first %.1f ms after it started", a.Command, a.Packets, a.ToPacketMS)
		} else {
			fmt.Fprintf(&b, "; `%s`: no packet", a.Command)
		}
	}
	if w.Woken {
		fmt.Fprintf(&b, "; woken by %s: %s", w.Waker, w.Packet)
		if w.Command != "" {
			fmt.Fprintf(&b, ", %.1f ms after `%s` started", w.ToPacketMS, w.Command)
		}
		fmt.Fprintf(&b, "; peer started again %.0f ms later", w.RestartMS)
	}
	return b.String()
}

// expectWakeSent checks what host sent: magic packets (sent) or none,
// on its own interfaces and in the coordinator's audit of wake attempts.
func (r *runner) expectWakeSent(ctx context.Context, console, host string, sent bool, within time.Duration) (string, error) {
	l := r.wake.sent[host]
	if l == nil {
		return "", fmt.Errorf("%s is not a peer or jumpoint", host)
	}
	count := func() (n int, macs []string) {
		for _, p := range l.Packets() {
			if p.Outgoing {
				n++
				if m := p.MAC.String(); !slices.Contains(macs, m) {
					macs = append(macs, m)
				}
			}
		}
		return n, macs
	}
	n, macs := count()
	if sent && n == 0 && within > 0 {
		poll(ctx, within, func(context.Context) bool { n, macs = count(); return n > 0 })
	}
	var targets []string
	for _, m := range macs {
		targets = append(targets, cmp.Or(r.wake.macHost[m], m))
	}
	out := fmt.Sprintf("%s sent %d magic packets", host, n)
	if n > 0 {
		out += " for " + strings.Join(targets, ", ")
	}
	asked, attempts, aerr := r.auditedWakers(ctx, console)
	switch {
	case aerr != nil:
		out += "; audit: " + aerr.Error()
	default:
		out += fmt.Sprintf("; the audit names it as a waker in %d of %d wake attempts", asked[host], attempts)
	}
	switch {
	case sent && n == 0:
		return out, fmt.Errorf("%s sent no magic packet", host)
	case !sent && n > 0:
		return out, fmt.Errorf("%s sent %d magic packets", host, n)
	case !sent && aerr == nil && asked[host] > 0:
		return out, fmt.Errorf("the coordinator asked %s to wake a peer %d times", host, asked[host])
	}
	return out, nil
}

// auditedWakers counts, per waker name, the wake attempts in the
// coordinator's audit that asked it, and the attempts.
func (r *runner) auditedWakers(ctx context.Context, console string) (map[string]int, int, error) {
	// Every kind, filtered here: --kind takes only the kinds this
	// version's CLI knows.
	var events []struct{ Kind, Detail, Code string }
	res, err := r.jm(ctx, console, &events, "audit", "--since", "24h", "--limit", "0", "--json")
	if err != nil {
		return nil, 0, fmt.Errorf("%v", res.failure())
	}
	asked := map[string]int{}
	attempts := 0
	for _, e := range events {
		if e.Kind != "wake" {
			continue
		}
		attempts++
		for _, name := range auditWakers(e.Detail) {
			asked[name]++
		}
	}
	return asked, attempts, nil
}

// auditWakers reads the waker names from a wake event's detail:
// "wakers: peer-a2 (peer), j-1 (jumpoint); 5 sent".
func auditWakers(detail string) []string {
	_, list, ok := strings.Cut(detail, "wakers: ")
	if !ok {
		return nil
	}
	list, _, _ = strings.Cut(list, ";")
	var names []string
	for _, w := range strings.Split(list, ", ") {
		name, _, _ := strings.Cut(strings.TrimSpace(w), " (")
		if name != "" && name != "none" {
			names = append(names, name)
		}
	}
	return names
}

// consoleOnce runs a console command and checks its exit status, catalog
// code, stdout and stderr.
func (r *runner) consoleOnce(ctx context.Context, console string, args []string, st Step, expect, expectErr string) (string, error) {
	res, err := r.command(ctx, console, r.bin, args...)
	if err != nil {
		return res.output(), err
	}
	r.noteWakeRequested(st.line, res.stdout)
	wantFail := st.ExpectExit != 0 || st.ExpectCode != ""
	switch {
	case !wantFail && res.code != 0:
		return res.output(), fmt.Errorf("jumpmesh %s on %s: exit %d: %s", strings.Join(args, " "), console, res.code, res.failure())
	case st.ExpectExit != 0 && res.code != st.ExpectExit:
		return res.output(), fmt.Errorf("exit %d, want %d: %s", res.code, st.ExpectExit, res.failure())
	case wantFail && res.code == 0:
		return res.output(), errors.New("exit 0, want a failure")
	}
	if st.ExpectCode != "" {
		if got := commandCode(res); got != catalog.Code(st.ExpectCode) {
			return res.output(), fmt.Errorf("error code %q, want %s: %s", got, st.ExpectCode, res.failure())
		}
	}
	if !strings.Contains(res.stdout, expect) {
		return res.output(), fmt.Errorf("stdout lacks %q", expect)
	}
	if !strings.Contains(res.stderr+failureDetail(res), expectErr) {
		return res.output(), fmt.Errorf("stderr lacks %q", expectErr)
	}
	return res.output(), nil
}

// commandCode is the catalog code a failed command reported: its --json
// error's, else the code whose message its stderr holds (the longest, so
// that one message inside another does not fool it).
func commandCode(res cmdResult) catalog.Code {
	var e struct{ Error struct{ Code string } }
	if json.Unmarshal([]byte(res.stdout), &e) == nil && e.Error.Code != "" {
		return catalog.Code(e.Error.Code)
	}
	var best catalog.Code
	for _, c := range catalog.Codes() {
		if m := c.Message(); strings.Contains(res.stderr, m) && (best == "" || len(m) > len(best.Message())) {
			best = c
		}
	}
	return best
}

// failureDetail is a --json error's message and detail, so expect-stderr
// reads the same with and without --json.
func failureDetail(res cmdResult) string {
	var e struct {
		Error struct{ Message, Detail string }
	}
	if json.Unmarshal([]byte(res.stdout), &e) == nil && e.Error.Message != "" {
		return "\n" + e.Error.Message + " " + e.Error.Detail
	}
	return ""
}

// noteWakeRequested keeps `wake --json`'s requested_at for the wake
// command of step line, so the time to the packet can be counted from the
// request rather than from the console's start.
func (r *runner) noteWakeRequested(line int, stdout string) {
	var v struct {
		RequestedAt time.Time `json:"requested_at"`
	}
	if r.wake == nil || json.Unmarshal([]byte(stdout), &v) != nil || v.RequestedAt.IsZero() {
		return
	}
	r.wake.mu.Lock()
	defer r.wake.mu.Unlock()
	if n := len(r.wake.cmds); n > 0 && r.wake.cmds[n-1].line == line {
		r.wake.cmds[n-1].requested = v.RequestedAt
	}
}
