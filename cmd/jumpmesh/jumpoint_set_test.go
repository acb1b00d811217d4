package main

import (
	"slices"
	"testing"
)

// TestRejoinPorts: the documented --allow 10.20.0.0/16:22,3389 reaches
// the coordinator as one entry although urfave/cli splits it at the comma;
// separate entries stay separate.
func TestRejoinPorts(t *testing.T) {
	for _, c := range []struct{ in, want []string }{
		{[]string{"10.20.0.0/16:22", "3389"}, []string{"10.20.0.0/16:22,3389"}},
		{[]string{"10.20.0.0/16:22", "3389", "8000-8100", "10.30.0.5:80"}, []string{"10.20.0.0/16:22,3389,8000-8100", "10.30.0.5:80"}},
		{[]string{"10.30.0.5:80", "10.30.0.6:80"}, []string{"10.30.0.5:80", "10.30.0.6:80"}},
		{[]string{"22"}, []string{"22"}}, // nothing to join to: the coordinator names the bad entry
		{[]string{""}, []string{""}},
		{[]string{"[2001:db8::/32]:22", "443"}, []string{"[2001:db8::/32]:22,443"}},
	} {
		if got := rejoinPorts(c.in); !slices.Equal(got, c.want) {
			t.Errorf("rejoinPorts(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
