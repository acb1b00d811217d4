package coordinator_test

import (
	"testing"

	"github.com/jumpmesh/jumpmesh/coordinator"
)

// TestWelcomeCarriesNATProbing: the site's nat-probing setting reaches
// peers in their welcome (on by default: nat_probing_off unset) and, when
// an administrator changes it, in the update pushed to the peers online; a
// peer that says hello afterwards is welcomed with it. It is its own
// switch: nat-prediction stays as it was.
func TestWelcomeCarriesNATProbing(t *testing.T) {
	site, key := pushSite(t, coordinator.Resources{})
	p := newRawPeer(t, site)
	w := p.hello(site, key, "office-01").GetWelcome()
	if w == nil || w.GetNatProbingOff() {
		t.Fatalf("welcome %v: want probing on by default", w)
	}
	if _, err := site.Admin.SetSettings(site.Ctx(), map[string]string{"nat-probing": "false"}); err != nil {
		t.Fatal(err)
	}
	if u := nextWelcomeUpdate(t, p); !u.GetNatProbingOff() || u.GetNatPredictionOff() {
		t.Fatalf("update after nat-probing=false: %v", u)
	}
	late := newRawPeer(t, site)
	if w := late.hello(site, key, "office-02").GetWelcome(); w == nil || !w.GetNatProbingOff() {
		t.Fatalf("welcome after nat-probing=false: %v", w)
	}
	if _, err := site.Admin.SetSettings(site.Ctx(), map[string]string{"nat-probing": "true"}); err != nil {
		t.Fatal(err)
	}
	if u := nextWelcomeUpdate(t, late); u.GetNatProbingOff() {
		t.Fatalf("update after nat-probing=true: %v", u)
	}
}
