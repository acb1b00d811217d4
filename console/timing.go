package console

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

// Timing records how long each phase of a jump took, for `jump --timing`
// (issue 17: a jump in a few round trips). Phases may overlap (the grant
// is asked for while the peer is dialled); each is kept with its start
// and end as offsets from the timing's origin, usually the process start.
// A nil *Timing records nothing, so the jump path calls it unconditionally.
type Timing struct {
	origin time.Time
	mu     sync.Mutex
	phases []Phase
}

// Phase is one timed part of a jump.
type Phase struct {
	Name       string
	Start, End time.Duration // since the origin
}

// Duration is the phase's length.
func (p Phase) Duration() time.Duration { return p.End - p.Start }

// NewTiming starts a timing whose offsets count from origin.
func NewTiming(origin time.Time) *Timing { return &Timing{origin: origin} }

// Begin starts phase name now; the returned func ends it.
func (t *Timing) Begin(name string) func() {
	if t == nil {
		return func() {}
	}
	start := time.Now()
	return func() { t.Add(name, start, time.Now()) }
}

// Add records phase name from start to end.
func (t *Timing) Add(name string, start, end time.Time) {
	if t == nil {
		return
	}
	t.mu.Lock()
	t.phases = append(t.phases, Phase{Name: name, Start: start.Sub(t.origin), End: end.Sub(t.origin)})
	t.mu.Unlock()
}

// Rename renames the last phase called name (a dial learns its path only
// once it is done); it does nothing if there is none.
func (t *Timing) Rename(name, to string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := len(t.phases) - 1; i >= 0; i-- {
		if t.phases[i].Name == name {
			t.phases[i].Name = to
			return
		}
	}
}

// Phases are the recorded phases, in the order they ended.
func (t *Timing) Phases() []Phase {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Phase(nil), t.phases...)
}

// Print writes the phases as a table: start and end offsets and length in
// milliseconds, then the total up to now.
func (t *Timing) Print(w io.Writer) {
	if t == nil {
		return
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%8.2f", float64(d.Microseconds())/1000) }
	fmt.Fprintf(w, "jumpmesh: timing    start      end   length  phase (ms since process start)\n")
	for _, p := range t.Phases() {
		fmt.Fprintf(w, "jumpmesh: timing %s %s %s  %s\n", ms(p.Start), ms(p.End), ms(p.Duration()), p.Name)
	}
	fmt.Fprintf(w, "jumpmesh: timing                   %s  total\n", ms(time.Since(t.origin)))
}

type timingKey struct{}

// WithTiming returns ctx carrying t: the console's calls under it record
// their phases in t rather than in the client's timing (an agent serves
// several jumps at once, each with its own).
func WithTiming(ctx context.Context, t *Timing) context.Context {
	return context.WithValue(ctx, timingKey{}, t)
}

// timingOf is the timing ctx carries, else the client's.
func (c *Client) timingOf(ctx context.Context) *Timing {
	if t, ok := ctx.Value(timingKey{}).(*Timing); ok {
		return t
	}
	return c.timing
}
