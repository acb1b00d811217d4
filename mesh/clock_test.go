package mesh_test

import (
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh"
)

func fired(t mesh.Timer) bool {
	select {
	case <-t.C():
		return true
	default:
		return false
	}
}

func TestManualClockTimers(t *testing.T) {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	c := mesh.NewManualClock(start)
	a, b := c.NewTimer(time.Second), c.NewTimer(time.Minute)
	if c.Waiting() != 2 {
		t.Fatalf("waiting %d, want 2", c.Waiting())
	}
	c.Advance(999 * time.Millisecond)
	if fired(a) || fired(b) {
		t.Fatal("fired early")
	}
	c.Advance(time.Millisecond)
	select {
	case at := <-a.C():
		if !at.Equal(start.Add(time.Second)) {
			t.Fatalf("fired at %v", at)
		}
	default:
		t.Fatal("a did not fire at its time")
	}
	if fired(b) || c.Waiting() != 1 {
		t.Fatalf("b fired or waiting %d", c.Waiting())
	}
	if a.Stop() {
		t.Fatal("Stop of a fired timer reported active")
	}

	// Reset of an active timer moves it; no stale time after Stop or Reset.
	if !b.Reset(2 * time.Second) {
		t.Fatal("Reset of an active timer reported inactive")
	}
	c.Set(start.Add(time.Hour))
	if b.Reset(time.Second) || fired(b) {
		t.Fatal("Reset of a fired timer: reported active, or kept the time fired before it")
	}
	c.Advance(time.Second)
	if b.Stop() || fired(b) {
		t.Fatal("Stop of a fired timer: reported active, or its time still delivered")
	}
	if c.Waiting() != 0 {
		t.Fatalf("waiting %d after stops", c.Waiting())
	}

	// A timer of zero fires at once; After is a timer's channel.
	if !fired(c.NewTimer(0)) {
		t.Fatal("zero timer did not fire")
	}
	ch := mesh.After(c, time.Minute)
	c.Advance(time.Minute)
	if _, ok := <-ch; !ok {
		t.Fatal("After")
	}
}

func TestSystemClockTimer(t *testing.T) {
	tm := mesh.SystemClock{}.NewTimer(time.Millisecond)
	<-tm.C()
	if tm.Stop() {
		t.Fatal("Stop after fire reported active")
	}
	tm.Reset(time.Hour)
	if !tm.Stop() || fired(tm) {
		t.Fatal("Stop of an active system timer")
	}
}
