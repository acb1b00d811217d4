package coordinator_test

import (
	"testing"

	"github.com/jumpmesh/jumpmesh/coordinator"
)

// TestWelcomeCarriesBulkConnections: the site's bulk-connections setting
// reaches peers in their welcome (on by default: bulk_off unset) and, when
// an administrator changes it, in the update pushed to the peers online; a
// peer that says hello afterwards is welcomed with it. It is its own
// switch: nat-probing stays as it was.
func TestWelcomeCarriesBulkConnections(t *testing.T) {
	site, key := pushSite(t, coordinator.Resources{})
	p := newRawPeer(t, site)
	w := p.hello(site, key, "office-01").GetWelcome()
	if w == nil || w.GetBulkOff() {
		t.Fatalf("welcome %v: want bulk connections on by default", w)
	}
	if _, err := site.Admin.SetSettings(site.Ctx(), map[string]string{"bulk-connections": "false"}); err != nil {
		t.Fatal(err)
	}
	if u := nextWelcomeUpdate(t, p); !u.GetBulkOff() || u.GetNatProbingOff() {
		t.Fatalf("update after bulk-connections=false: %v", u)
	}
	late := newRawPeer(t, site)
	if w := late.hello(site, key, "office-02").GetWelcome(); w == nil || !w.GetBulkOff() {
		t.Fatalf("welcome after bulk-connections=false: %v", w)
	}
	if _, err := site.Admin.SetSettings(site.Ctx(), map[string]string{"bulk-connections": "true"}); err != nil {
		t.Fatal(err)
	}
	if u := nextWelcomeUpdate(t, late); u.GetBulkOff() {
		t.Fatalf("update after bulk-connections=true: %v", u)
	}
}
