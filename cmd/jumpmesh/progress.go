package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/jumpmesh/jumpmesh/sim/results"
	"github.com/jumpmesh/jumpmesh/sim/scenario"
)

// stepProgress shows a lab run's steps as they end (`sim run`, `sim grid`).
// On a terminal it keeps one line at the bottom, redrawn as time passes,
//
//	[#######.....] 7/12  00:41  connect con-easy peer-hard
//
// (steps done, elapsed time, the step running now) and prints each
// finished step's line above it. Anywhere else (a pipe, a file, a CI log)
// it prints the finished steps' lines only.
//
// The runner reports a step when it ends, never when it starts, so the
// step shown on the bar is the next one in the list it was given. Step may
// be called from any goroutine; Close stops the redrawing.
type stepProgress struct {
	w     io.Writer
	tty   bool
	cols  func() int // the terminal's width
	now   func() time.Time
	start time.Time
	names []string

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once

	mu     sync.Mutex
	done   int
	shown  string // the bar as last drawn
	closed bool
}

// progressEvery is how often the bar is redrawn (its clock moves).
const progressEvery = 200 * time.Millisecond

// barWidth is the bar's length in characters, between its brackets.
const barWidth = 20

// clearLine takes the cursor back to the start of the line and blanks it.
const clearLine = "\r\x1b[K"

// newStepProgress shows the progress of the steps called names on w: a
// bar if w is a terminal, plain lines otherwise.
func newStepProgress(w io.Writer, names []string) *stepProgress {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return startStepProgress(w, names, nil, time.Now, 0)
	}
	cols := func() int {
		if c, _, err := term.GetSize(int(f.Fd())); err == nil && c > 0 {
			return c
		}
		return 80
	}
	return startStepProgress(w, names, cols, time.Now, progressEvery)
}

// newScenarioProgress shows the progress of sc's steps on w.
func newScenarioProgress(w io.Writer, sc *scenario.Scenario) *stepProgress {
	names := make([]string, len(sc.Steps))
	for i, st := range sc.Steps {
		names[i] = st.Name()
	}
	return newStepProgress(w, names)
}

// startStepProgress is newStepProgress with its parts given: cols is nil
// when w is not a terminal (no bar), now is the clock, every the redraw
// interval.
func startStepProgress(w io.Writer, names []string, cols func() int, now func() time.Time, every time.Duration) *stepProgress {
	p := &stepProgress{w: w, tty: cols != nil, cols: cols, now: now, start: now(), names: names, stop: make(chan struct{})}
	if p.tty {
		p.mu.Lock()
		p.draw()
		p.mu.Unlock()
		p.wg.Add(1)
		go p.redraw(every)
	}
	return p
}

func (p *stepProgress) redraw(every time.Duration) {
	defer p.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.mu.Lock()
			if !p.closed {
				p.draw()
			}
			p.mu.Unlock()
		}
	}
}

// Step prints a finished step's line (above the bar, on a terminal).
func (p *stepProgress) Step(s results.Step) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done++
	bar := p.tty && !p.closed
	if bar {
		io.WriteString(p.w, clearLine)
		p.shown = ""
	}
	printStep(p.w, s)
	if bar {
		p.draw()
	}
}

// Close stops the redrawing and takes the bar off the screen, leaving the
// steps' lines. It is idempotent.
func (p *stepProgress) Close() {
	p.once.Do(func() {
		close(p.stop)
		p.wg.Wait() // not under mu: the redraw takes it
		p.mu.Lock()
		defer p.mu.Unlock()
		p.closed = true
		if p.tty && p.shown != "" {
			io.WriteString(p.w, clearLine)
		}
	})
}

// draw writes the bar if it changed since it was last drawn; p.mu is held.
func (p *stepProgress) draw() {
	next := "finishing"
	if p.done < len(p.names) {
		next = p.names[p.done]
	}
	line := progressLine(p.done, len(p.names), p.now().Sub(p.start), next, p.cols())
	if line == p.shown {
		return
	}
	io.WriteString(p.w, clearLine+line)
	p.shown = line
}

// progressLine is the bar, cut to fit in cols columns (a line that wraps
// cannot be redrawn in place).
func progressLine(done, total int, elapsed time.Duration, next string, cols int) string {
	filled := barWidth
	if total > 0 {
		filled = min(barWidth, barWidth*done/total)
	}
	line := fmt.Sprintf("[%s%s] %d/%d  %s  %s", strings.Repeat("#", filled), strings.Repeat(".", barWidth-filled),
		done, total, clock(elapsed), next)
	if r := []rune(line); len(r) > cols-1 {
		line = string(r[:max(cols-2, 0)]) + "…"
	}
	return line
}

// clock is an elapsed time as mm:ss, or h:mm:ss past an hour.
func clock(d time.Duration) string {
	s := int(d / time.Second)
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%02d:%02d", s/60, s%60)
}

// printStep is a finished step's line.
func printStep(w io.Writer, s results.Step) {
	switch {
	case s.Skipped:
		fmt.Fprintf(w, "- %-50s skipped\n", s.Name)
	case s.OK:
		fmt.Fprintf(w, "✓ %-50s %8s\n", s.Name, s.Duration().Round(time.Millisecond))
	default:
		fmt.Fprintf(w, "✗ %-50s %8s  %s\n", s.Name, s.Duration().Round(time.Millisecond), s.Error)
	}
}
