package relay

import (
	"errors"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/sys/unix"
)

// The splice loops (issue 17): every running splice's two sockets are
// served by one of a few epoll loops, each a goroutine blocked in
// epoll_wait on its own thread, instead of two goroutines per splice in
// io.Copy. The sockets leave Go's netpoller (the splicer keeps duplicates
// of their descriptors and closes the net.TCPConn), so a frame costs the
// relay one wake-up shared by every socket ready at that moment and two
// splice(2) calls (socket to the loop's pipe, pipe to the other socket),
// where io.Copy took a netpoller wake-up, a goroutine hand-off and three
// calls (the third finding nothing). Level-triggered: a socket with more
// than one splice's worth of bytes is seen again at the next wait.
//
// One pipe per loop carries every frame: it is empty between events. When
// the other socket takes only part of what was read (its send buffer is
// full), that pipe, with the rest in it, becomes the direction's own (the
// loop takes an empty one from its pool, or a new one, at its next read);
// the reading socket stops being watched for input and the other is
// watched for output until the pipe is empty, and back to the pool it
// goes: a slow reader holds its own direction back, never the loop or the
// other direction. A splice therefore holds two descriptors (its
// sockets), and a pipe's two only while a direction waits for its reader.

// splicePipeSize is the capacity the loops ask for their pipes, and so
// the most one splice(2) moves from a socket (a bulk transfer's chunk);
// a pipe the kernel does not let grow (the user's pipe-user-pages-soft)
// keeps its default 64 KiB, and then moves that much.
const splicePipeSize = 256 << 10

// splicePoolPipes bounds the empty pipes a loop keeps for directions
// whose reader is slow; more are closed once empty.
const splicePoolPipes = 16

// spliceLoopEvents is how many ready sockets one epoll_wait returns.
const spliceLoopEvents = 256

// When a loop reads more than spliceGatherRate times a second (many
// sessions, each frame its own wake-up), it lets frames gather: after
// serving what was ready it sleeps before it waits again, so that the
// next wake-up finds several sockets ready — as long as
// spliceGatherFrames reads take to come at the rate it measured, within
// spliceGatherMin and spliceGather: a faster stream of frames gathers
// shorter, and no stream longer than spliceGather. A byte then waits at
// most spliceGather longer in the relay; below that rate (a few
// interactive sessions) nothing waits. A batch that read a whole pipe's
// capacity from a socket (a bulk transfer, more waiting behind it) is
// never followed by a sleep. Gathering up to 2 ms instead of 1 woke the
// relay less often but cost it no less per frame (495 against 418 µs per
// session-second in one pair of runs, 518 against 474 in session 26's):
// the bound stays at 1 ms.
var (
	spliceGather       = time.Millisecond
	spliceGatherMin    = 250 * time.Microsecond
	spliceGatherRate   = 2000.0
	spliceGatherFrames = 32.0
)

// gatherDelay is how long a loop reading rate times a second lets frames
// gather after a batch: none below spliceGatherRate.
func gatherDelay(rate float64) time.Duration {
	if spliceGather <= 0 || rate < spliceGatherRate {
		return 0
	}
	if rate <= 0 {
		return spliceGather
	}
	d := time.Duration(spliceGatherFrames / rate * float64(time.Second))
	return min(max(d, spliceGatherMin), spliceGather)
}

// spliceRaw makes the loops' calls that never block (splice(2) on
// non-blocking descriptors, an epoll_wait that does not wait, the
// gathering's sleep of at most spliceGather) raw system calls, which Go's
// scheduler does not see: made the ordinary way, each one put the loop's
// processor up for grabs, and the scheduler's monitor thread (sysmon),
// seeing a processor in a system call at each of its ticks, handed it to
// another thread during the sleeps and kept ticking every 20 µs instead
// of every 10 ms — 7 % of the relay's CPU and most of its thread switches
// (BenchmarkRelaySessionsPerCore's splice window, issue 17 session 27).
// Only the wait for the next event, when none is ready, blocks, and it is
// made the ordinary way. A raw call keeps the loop's processor, which the
// loops can afford while they are at most half of Go's processors
// (spliceLoopCount); on one processor a loop busy with a bulk transfer or
// gathering would hold up every other goroutine until Go's preemption
// (10 ms), so there every call is made the ordinary way. A preemption
// signal cuts a raw sleep short.
var spliceRaw = true

// spliceDelayAck makes the loops leave the TCP acknowledgment of what
// they read to the kernel's delayed-ACK rules: they turn TCP_QUICKACK off
// on a socket before they read it. A screen's stream is one-way, so the
// kernel, seeing the relay read a pushed segment to the end, acknowledged
// every frame at once from the read itself (tcp_cleanup_rbuf): an ACK
// built, sent and delivered over loopback on the relay's CPU, 20 % of it
// per read (docs/performance.md, issue 17 session 27). With quick ACKs
// off (the socket in "ping-pong" mode) the kernel acknowledges every
// second frame (on loopback from the sender's side of the delivery, on a
// network from the relay's receive path), or from its delayed-ACK timer
// (40 ms at the least) when no second frame comes.
//
// That timer also ends the mode, so it is turned off again, but only when
// the timer may have fired: at a read at least spliceDelayAckGap after the
// direction's last one, and at least every spliceDelayAckEvery whatever
// the gaps (a loop late to read may see a shorter gap than the socket
// did). The call costs a system call (0.4-0.6 µs): made before every
// read, it cost the machine what the halved ACKs save
// (BenchmarkSpliceLoopScreens, 8 rounds: 32.56 µs of the whole machine
// per frame against quick ACKs' 32.27; after a gap only, 31.56); turning
// the mode off again every 100 ms whatever the gaps let one late frame
// bring back an ACK per frame until then. Only ACKs wait, never data: the ends send with
// TCP_NODELAY, so no write waits for an ACK, and a keystroke crosses at
// once (TestSpliceLoopKeystrokeCrossesAtOnce, TestSpliceLoopDelaysAcks).
var (
	spliceDelayAck      = true
	spliceDelayAckGap   = 35 * time.Millisecond
	spliceDelayAckEvery = time.Second
)

// quickAckOff is TCP_QUICKACK's value that turns quick ACKs off.
var quickAckOff int32

// spliceGatherWindow is how often a loop re-decides whether to gather,
// from the reads it made since the last decision.
const spliceGatherWindow = 10 * time.Millisecond

// spliceParks counts the times a direction's bytes waited in a pipe of
// its own (tests).
var spliceParks atomic.Int64

// spliceLoopCount is how many loops a splicer runs: one for every two
// processors Go runs on, at most 4. A loop's goroutine spends its idle
// time in a blocking system call (epoll_wait, or the gathering's sleep);
// with as many loops as processors every processor is often in one, and
// Go's scheduler then hands them to other threads and takes them back at
// the wake-ups — 0.44 thread switches per frame against 0.22 with one
// loop on two processors (BenchmarkRelaySessionsPerCore). Parking the
// loop in Go's netpoller instead (epoll_wait without a timeout once the
// set is readable) measured no better (0.42).
var spliceLoopCount = func() int { return min(max(runtime.GOMAXPROCS(0)/2, 1), 4) }

// spliceLoop is one epoll loop and the splices it serves. Its fields
// after mu are the loop goroutine's only.
type spliceLoop struct {
	s    *splicer
	epfd int
	wake int // an eventfd: a message is queued

	mu     sync.Mutex
	queue  []func()
	closed bool
	count  int // splices handed to this loop and not torn down

	done    chan struct{}
	scratch spipe // the shared pipe (none: r < 0, taken at the next read)
	reads   int   // reads that moved bytes in this batch
	full    bool  // a read in this batch filled the pipe
	raw     bool  // this batch's calls are raw (spliceRaw, on two processors or more)
	pool    []spipe
	socks   []*rawSock // by descriptor
	epoch   time.Time
	now     time.Duration // this batch's time since epoch (spliceDelayAck)
}

// rawSplice is a splice the loops serve: sockets a and b, direction 0
// a→b and direction 1 b→a.
type rawSplice struct {
	// sock holds the sockets socks points to: a splice and its sockets are
	// one allocation, so that serving a socket's event touches one place
	// in memory, not two.
	sock  [2]rawSock
	loop  *spliceLoop
	owner peer.ID
	socks [2]*rawSock
	dirs  [2]rawDir
	timer *time.Timer
	over  bool
}

// rawSock is one of a splice's sockets and what the loop watches it for.
type rawSock struct {
	sp   *rawSplice
	i    int // its index: it is direction i's source and direction 1-i's sink
	fd   int
	mask uint32 // the events registered
	reg  bool   // registered in the epoll set
	hup  bool   // epoll said EPOLLHUP: it is never watched with an empty mask
}

// spipe is a pipe: its read and write ends and its capacity.
type spipe struct{ r, w, size int }

var noPipe = spipe{r: -1, w: -1}

// newPipe makes a pipe of splicePipeSize if the kernel lets it grow.
func newPipe() (spipe, error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return noPipe, err
	}
	size, err := unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, splicePipeSize)
	if err != nil {
		if size, err = unix.FcntlInt(uintptr(fds[0]), unix.F_GETPIPE_SZ, 0); err != nil {
			size = 64 << 10
		}
	}
	return spipe{r: fds[0], w: fds[1], size: size}, nil
}

func (p spipe) close() {
	if p.r >= 0 {
		_ = unix.Close(p.r)
		_ = unix.Close(p.w)
	}
}

// rawDir is one direction of a splice.
type rawDir struct {
	pipe    spipe // its own pipe while pending > 0
	pending int   // bytes in that pipe, not yet taken by the sink
	n       int64 // bytes read from the source
	eof     bool  // the source ended; the sink was half-closed
	// read and acks are the loop's now at the direction's last read and
	// when it last turned quick ACKs off on the source (spliceDelayAck);
	// acks < 0: never.
	read, acks time.Duration
}

// Close cuts the splice (the splicer's evict and close): its loop closes
// its sockets.
func (sp *rawSplice) Close() error {
	sp.loop.post(func() { sp.loop.teardown(sp, "") })
	return nil
}

// startRaw hands the paired connections a and b to a splice loop. It
// runs under s.mu; false means the loops are not available (the caller
// then copies with io.Copy), and then a and b are untouched.
func (s *splicer) startRaw(owner peer.ID, a, b *net.TCPConn) (*rawSplice, bool) {
	if s.loops == nil {
		for range spliceLoopCount() {
			l, err := newSpliceLoop(s)
			if err != nil {
				s.log.Warn("relay: splice loop", "err", err)
				break
			}
			s.loops = append(s.loops, l)
		}
		if len(s.loops) == 0 {
			s.loops = []*spliceLoop{} // not nil: tried once
		}
	}
	if len(s.loops) == 0 {
		return nil, false
	}
	l := s.loops[0]
	for _, o := range s.loops[1:] {
		if o.load() < l.load() {
			l = o
		}
	}
	fa, err := dupFD(a)
	if err != nil {
		return nil, false
	}
	fb, err := dupFD(b)
	if err != nil {
		_ = unix.Close(fa)
		return nil, false
	}
	// The duplicates keep the sockets open: closing the connections only
	// takes them out of Go's netpoller.
	_ = a.Close()
	_ = b.Close()
	sp := &rawSplice{loop: l, owner: owner}
	sp.sock[0] = rawSock{sp: sp, i: 0, fd: fa}
	sp.sock[1] = rawSock{sp: sp, i: 1, fd: fb}
	sp.socks = [2]*rawSock{&sp.sock[0], &sp.sock[1]}
	for i := range sp.dirs {
		sp.dirs[i].pipe = noPipe
		sp.dirs[i].acks = -1
	}
	l.mu.Lock()
	l.count++
	l.mu.Unlock()
	s.wg.Add(1)
	if s.duration > 0 {
		sp.timer = time.AfterFunc(s.duration, func() {
			l.post(func() { l.teardown(sp, spliceCutDuration) })
		})
	}
	l.post(func() { l.add(sp) })
	return sp, true
}

// dupFD duplicates c's descriptor (close-on-exec; it shares the
// socket's non-blocking mode).
func dupFD(c *net.TCPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, derr := -1, error(nil)
	if err := rc.Control(func(f uintptr) { fd, derr = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	return fd, derr
}

func newSpliceLoop(s *splicer) (*spliceLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, err
	}
	l := &spliceLoop{s: s, epfd: epfd, wake: wake, done: make(chan struct{}), epoch: time.Now()}
	l.scratch, err = newPipe()
	if err == nil {
		err = unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)})
	}
	if err != nil {
		l.closeFDs()
		return nil, err
	}
	go l.run()
	return l, nil
}

func (l *spliceLoop) load() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.count
}

// post queues fn for the loop goroutine and wakes it; after stop, fn is
// dropped.
func (l *spliceLoop) post(fn func()) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.queue = append(l.queue, fn)
	first := len(l.queue) == 1
	l.mu.Unlock()
	if first {
		var one = [8]byte{1}
		_, _ = unix.Write(l.wake, one[:])
	}
}

// stop ends the loop once the splicer's splices are torn down and waits
// for it.
func (l *spliceLoop) stop() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	var one = [8]byte{1}
	_, _ = unix.Write(l.wake, one[:])
	<-l.done
}

func (l *spliceLoop) run() {
	defer close(l.done)
	defer l.closeFDs()
	events := make([]unix.EpollEvent, spliceLoopEvents)
	gather := gatherDelay(0) // the gathering's sleep (0: none), at first as a loop that never read
	windowStart, windowReads := time.Now(), 0
	for {
		l.raw = spliceRaw && runtime.GOMAXPROCS(0) >= 2
		n, err := l.wait(events)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			l.s.log.Error("relay: splice loop", "err", err)
			return
		}
		if spliceDelayAck {
			l.now = time.Since(l.epoch)
		}
		for _, ev := range events[:n] {
			if ev.Fd == int32(l.wake) {
				continue
			}
			if k := l.sock(ev.Fd); k != nil {
				l.ready(k, ev.Events)
			}
		}
		for _, ev := range events[:n] {
			if ev.Fd == int32(l.wake) {
				var buf [8]byte
				_, _ = unix.Read(l.wake, buf[:])
				l.mu.Lock()
				queue, closed := l.queue, l.closed
				l.queue = nil
				l.mu.Unlock()
				for _, fn := range queue {
					fn()
				}
				if closed {
					return
				}
			}
		}
		if l.reads > 0 {
			l.s.wakeups.Inc()
			l.s.reads.Add(float64(l.reads))
		}
		windowReads += l.reads
		if now := time.Now(); now.Sub(windowStart) >= spliceGatherWindow {
			gather = gatherDelay(float64(windowReads) / now.Sub(windowStart).Seconds())
			windowStart, windowReads = now, 0
		}
		if gather > 0 && l.reads > 0 && !l.full {
			gatherSleep(l.raw, gather)
		}
		l.reads, l.full = 0, false
	}
}

func (l *spliceLoop) closeFDs() {
	for _, fd := range []int{l.epfd, l.wake} {
		if fd >= 0 {
			_ = unix.Close(fd)
		}
	}
	l.scratch.close()
	l.scratch = noPipe
	for _, p := range l.pool {
		p.close()
	}
	l.pool = nil
}

// add starts watching sp's sockets for input.
func (l *spliceLoop) add(sp *rawSplice) {
	for _, k := range sp.socks {
		if k.fd >= len(l.socks) {
			l.socks = append(l.socks, make([]*rawSock, k.fd+1-len(l.socks))...)
		}
		l.socks[k.fd] = k
	}
	for _, k := range sp.socks {
		if err := l.watch(k); err != nil {
			l.teardown(sp, "")
			return
		}
	}
}

// sock is the socket of descriptor fd, if the loop serves it.
func (l *spliceLoop) sock(fd int32) *rawSock {
	if int(fd) < len(l.socks) {
		return l.socks[fd]
	}
	return nil
}

// want is what k is to be watched for: input while its direction reads,
// output while the other direction's bytes wait for it.
func (sp *rawSplice) want(k *rawSock) uint32 {
	var m uint32
	if d := &sp.dirs[k.i]; !d.eof && d.pending == 0 {
		m |= unix.EPOLLIN
	}
	if sp.dirs[1-k.i].pending > 0 {
		m |= unix.EPOLLOUT
	}
	return m
}

// watch brings k's registration in line with what its splice wants. A
// socket that hung up (both of its directions shut) reports EPOLLHUP at
// every wait whatever its mask, so it leaves the set while nothing is
// wanted of it.
func (l *spliceLoop) watch(k *rawSock) error {
	m := k.sp.want(k)
	switch {
	case k.hup && m == 0:
		if k.reg {
			k.reg = false
			return unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, k.fd, nil)
		}
		return nil
	case !k.reg:
		k.reg, k.mask = true, m
		return unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, k.fd, &unix.EpollEvent{Events: m, Fd: int32(k.fd)})
	case k.mask != m:
		k.mask = m
		return unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, k.fd, &unix.EpollEvent{Events: m, Fd: int32(k.fd)})
	}
	return nil
}

// ready serves socket k's events.
func (l *spliceLoop) ready(k *rawSock, ev uint32) {
	sp := k.sp
	if ev&unix.EPOLLERR != 0 {
		l.teardown(sp, "")
		return
	}
	if ev&unix.EPOLLHUP != 0 {
		k.hup = true
	}
	if ev&unix.EPOLLOUT != 0 && sp.dirs[1-k.i].pending > 0 {
		if !l.flush(sp, 1-k.i) {
			return
		}
	}
	if ev&(unix.EPOLLIN|unix.EPOLLHUP) != 0 && !sp.dirs[k.i].eof && sp.dirs[k.i].pending == 0 {
		if !l.read(sp, k.i) {
			return
		}
	}
	for _, k := range sp.socks {
		if err := l.watch(k); err != nil {
			l.teardown(sp, "")
			return
		}
	}
}

// read moves what direction i's source holds (at most the loop pipe's
// capacity, and not past the data limit) into the loop's pipe and from
// there to the sink. It reports whether the splice goes on.
func (l *spliceLoop) read(sp *rawSplice, i int) bool {
	d := &sp.dirs[i]
	src, dst := sp.socks[i].fd, sp.socks[1-i].fd
	if l.scratch.r < 0 {
		p, err := l.takePipe()
		if err != nil {
			l.teardown(sp, "")
			return false
		}
		l.scratch = p
	}
	want := int64(l.scratch.size)
	if limit := l.s.data; limit > 0 {
		want = min(want, limit-d.n)
	}
	if spliceDelayAck {
		// Before the read: the read is where the kernel decides.
		if d.acks < 0 || l.now-d.read >= spliceDelayAckGap || l.now-d.acks >= spliceDelayAckEvery {
			delayAcks(l.raw, src)
			d.acks = l.now
		}
		d.read = l.now
	}
	n, err := spliceRetry(l.raw, src, l.scratch.w, int(want))
	switch {
	case errors.Is(err, unix.EAGAIN):
		return true
	case err != nil:
		l.teardown(sp, "")
		return false
	case n == 0:
		d.eof = true
		_ = unix.Shutdown(dst, unix.SHUT_WR)
		if sp.dirs[1-i].eof && sp.dirs[1-i].pending == 0 {
			l.teardown(sp, "")
			return false
		}
		return true
	}
	d.n += int64(n)
	l.reads++
	l.full = l.full || n == l.scratch.size
	left := n
	for left > 0 {
		m, err := spliceRetry(l.raw, l.scratch.r, dst, left)
		if errors.Is(err, unix.EAGAIN) {
			break
		}
		if err != nil {
			// Bytes of a dead splice stay in the loop's pipe: drop it.
			l.scratch.close()
			l.scratch = noPipe
			l.teardown(sp, "")
			return false
		}
		left -= m
	}
	if left > 0 {
		// The sink's buffer is full: the rest waits in the loop's pipe,
		// which becomes the direction's own (the loop takes another at
		// its next read), and the source is not read until it has gone.
		spliceParks.Add(1)
		d.pipe, d.pending = l.scratch, left
		l.scratch = noPipe
	}
	if limit := l.s.data; limit > 0 && d.n >= limit {
		l.teardown(sp, spliceCutData)
		return false
	}
	return true
}

// takePipe is an empty pipe from the pool, or a new one.
func (l *spliceLoop) takePipe() (spipe, error) {
	if n := len(l.pool); n > 0 {
		p := l.pool[n-1]
		l.pool = l.pool[:n-1]
		return p, nil
	}
	return newPipe()
}

// flush moves direction i's parked bytes to its sink; once they are all
// gone its pipe goes back to the pool. It reports whether the splice goes
// on.
func (l *spliceLoop) flush(sp *rawSplice, i int) bool {
	d := &sp.dirs[i]
	for d.pending > 0 {
		m, err := spliceRetry(l.raw, d.pipe.r, sp.socks[1-i].fd, d.pending)
		if errors.Is(err, unix.EAGAIN) {
			return true
		}
		if err != nil {
			l.teardown(sp, "")
			return false
		}
		d.pending -= m
	}
	l.release(d)
	return true
}

// release gives direction d's pipe back to the pool when it is empty and
// the pool not full, and closes it otherwise.
func (l *spliceLoop) release(d *rawDir) {
	if d.pipe.r < 0 {
		return
	}
	if d.pending == 0 && len(l.pool) < splicePoolPipes {
		l.pool = append(l.pool, d.pipe)
	} else {
		d.pipe.close()
	}
	d.pipe, d.pending = noPipe, 0
}

// spliceRetry is splice(2) from fd in to fd out, non-blocking, retried
// when a signal interrupts it; raw: a raw system call.
func spliceRetry(raw bool, in, out, n int) (int, error) {
	for {
		var m int
		var err error
		if raw {
			r, _, e := unix.RawSyscall6(unix.SYS_SPLICE, uintptr(in), 0, uintptr(out), 0, uintptr(n), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			m, err = int(r), errnoErr(e)
		} else {
			var m64 int64
			m64, err = unix.Splice(in, nil, out, nil, n, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			m = int(m64)
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return m, err
	}
}

// delayAcks turns quick ACKs off on socket fd (spliceDelayAck); raw: a
// raw system call. An error (a socket already reset) is the next
// splice(2)'s to report.
func delayAcks(raw bool, fd int) {
	if raw {
		_, _, _ = unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_QUICKACK, uintptr(unsafe.Pointer(&quickAckOff)), 4, 0)
		return
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_QUICKACK, 0)
}

// wait is the loop's epoll_wait: what is ready now, without blocking
// (a raw call), else what is ready next, blocking.
func (l *spliceLoop) wait(events []unix.EpollEvent) (int, error) {
	if l.raw {
		r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(l.epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
		if e != 0 || r > 0 {
			return int(r), errnoErr(e)
		}
	}
	return unix.EpollWait(l.epfd, events, -1)
}

// gatherSleep is the gathering's nanosleep; raw: a raw system call, which
// a signal (Go's preemption) cuts short.
func gatherSleep(raw bool, d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	if raw {
		_, _, _ = unix.RawSyscall(unix.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&ts)), 0, 0)
		return
	}
	_ = unix.Nanosleep(&ts, nil)
}

// errnoErr is e as an error, nil for none.
func errnoErr(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// teardown ends sp: its sockets and pipes closed, its bytes counted, the
// splicer told; cut names the limit that ended it, if any. A splice
// already torn down is left alone.
func (l *spliceLoop) teardown(sp *rawSplice, cut string) {
	if sp.over {
		return
	}
	sp.over = true
	if sp.timer != nil {
		sp.timer.Stop()
	}
	for _, k := range sp.socks {
		if k.fd < len(l.socks) {
			l.socks[k.fd] = nil
		}
		_ = unix.Close(k.fd) // leaves the epoll set with it
	}
	for i := range sp.dirs {
		l.release(&sp.dirs[i])
	}
	if cut != "" {
		l.s.cuts.WithLabelValues(cut).Inc()
	}
	l.s.bytes.Add(float64(sp.dirs[0].n + sp.dirs[1].n))
	l.mu.Lock()
	l.count--
	l.mu.Unlock()
	l.s.ended(sp, sp.owner)
}
