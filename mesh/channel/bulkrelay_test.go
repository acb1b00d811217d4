package channel

import (
	"testing"
	"time"
)

// TestSpliceMemory: a relay whose splice failed is skipped until
// SpliceRetryAfter has passed, then tried again; others are not skipped.
func TestSpliceMemory(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	m := &SpliceMemory{now: func() time.Time { return now }}
	if m.Skip("relay-a") {
		t.Fatal("a relay that never failed is skipped")
	}
	m.Failed("relay-a")
	now = now.Add(SpliceRetryAfter - time.Second)
	if !m.Skip("relay-a") || m.Skip("relay-b") {
		t.Fatal("within the retry period: want relay-a skipped, relay-b not")
	}
	now = now.Add(time.Second)
	if m.Skip("relay-a") {
		t.Fatal("relay-a still skipped after the retry period")
	}
}
