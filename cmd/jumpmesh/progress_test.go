package main

import (
	"bytes"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creack/pty"
	"go.uber.org/goleak"

	"github.com/jumpmesh/jumpmesh/sim/results"
)

var progressSteps = []results.Step{
	{Index: 1, Name: "init", DurationMS: 1234, OK: true},
	{Index: 2, Name: "connect con-easy peer-hard", DurationMS: 30000, Error: "no connection"},
	{Index: 3, Name: "stop peer-hard", Skipped: true},
}

func progressNames() []string {
	var n []string
	for _, s := range progressSteps {
		n = append(n, s.Name)
	}
	return n
}

// TestStepProgressPlain: off a terminal, the finished steps' lines and
// nothing else, and no goroutine.
func TestStepProgressPlain(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var b bytes.Buffer
	p := newStepProgress(&b, progressNames())
	for _, s := range progressSteps {
		p.Step(s)
	}
	p.Close()
	p.Close()
	want := "✓ init                                                 1.234s\n" +
		"✗ connect con-easy peer-hard                              30s  no connection\n" +
		"- stop peer-hard                                     skipped\n"
	if b.String() != want {
		t.Errorf("output\n%q\nwant\n%q", b.String(), want)
	}
}

// TestStepProgressTerminal: on a terminal (a pty) the bar is drawn at once,
// redrawn under each finished step's line, and taken away on Close.
func TestStepProgressTerminal(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ptm, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	if err := pty.Setsize(tty, &pty.Winsize{Rows: 24, Cols: 100}); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	copied := make(chan struct{})
	go func() {
		io.Copy(&out, ptm) // ends when the pty is closed
		close(copied)
	}()
	defer func() {
		tty.Close()
		ptm.Close()
		<-copied
		if t.Failed() {
			t.Logf("terminal output: %q", out.String())
		}
	}()

	p := newStepProgress(tty, progressNames())
	waitFor(t, 5*time.Second, "the bar", func() bool {
		return strings.Contains(out.String(), "\r\x1b[K[....................] 0/3  00:00  init")
	})
	p.Step(progressSteps[0])
	waitFor(t, 5*time.Second, "the step's line above the bar", func() bool {
		return strings.Contains(out.String(), "\r\x1b[K✓ init")
	})
	waitFor(t, 5*time.Second, "the bar after a step", func() bool {
		return strings.Contains(out.String(), "[######..............] 1/3  00:00  connect con-easy peer-hard")
	})
	p.Close()
	p.Step(progressSteps[1]) // after Close: the line, no bar
	waitFor(t, 5*time.Second, "the bar taken away", func() bool {
		return strings.HasSuffix(out.String(), "peer-hard\r\x1b[K✗ connect con-easy peer-hard                              30s  no connection\r\n")
	})
}

// TestStepProgressClock: the bar's clock moves without any step ending,
// and the bar fits the terminal.
func TestStepProgressClock(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var now atomic.Int64
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return t0.Add(time.Duration(now.Load())) }
	var out syncBuffer
	p := startStepProgress(&out, progressNames(), func() int { return 50 }, clock, time.Millisecond)
	defer p.Close()
	p.Step(progressSteps[0])
	now.Store(int64(41 * time.Second))
	// 50 columns: the line is cut to 49, ending in "…".
	waitFor(t, 5*time.Second, "the clock at 00:41", func() bool {
		return strings.HasSuffix(out.String(), "\r\x1b[K[######..............] 1/3  00:41  connect con-e…")
	})
	lines := strings.Split(out.String(), "\r\x1b[K")
	if n := strings.Count(out.String(), "00:41"); n != 1 {
		t.Errorf("the unchanged bar was drawn %d times: %q", n, lines)
	}
	p.Step(progressSteps[1])
	p.Step(progressSteps[2])
	now.Store(int64(time.Hour + 2*time.Minute + 3*time.Second))
	waitFor(t, 5*time.Second, "the last bar", func() bool {
		return strings.HasSuffix(out.String(), "[####################] 3/3  1:02:03  finishing")
	})
	p.Close()
	if !strings.HasSuffix(out.String(), "finishing\r\x1b[K") {
		t.Errorf("Close left the bar: %q", out.String())
	}
}

func TestProgressLine(t *testing.T) {
	for _, c := range []struct {
		done, total, cols int
		elapsed           time.Duration
		next, want        string
	}{
		{7, 12, 80, 41 * time.Second, "connect con-easy peer-hard", "[###########.........] 7/12  00:41  connect con-easy peer-hard"},
		{0, 0, 80, 0, "finishing", "[####################] 0/0  00:00  finishing"},
		{1, 2, 20, 61 * time.Second, "init", "[##########.......…"},
	} {
		if got := progressLine(c.done, c.total, c.elapsed, c.next, c.cols); got != c.want {
			t.Errorf("progressLine(%d, %d, %v, %q, %d) = %q, want %q", c.done, c.total, c.elapsed, c.next, c.cols, got, c.want)
		}
	}
}
