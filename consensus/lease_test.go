package consensus

import (
	"testing"
	"time"
)

func TestLeaseExpiry(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	const lease = 2 * time.Second
	for _, tc := range []struct {
		name     string
		contacts []time.Time
		self     bool
		q        int
		want     time.Time
		ok       bool
	}{
		{"self and one of four, quorum 3: none", []time.Time{at(900), {}, {}, {}}, true, 3, time.Time{}, false},
		{"self and two: from the older of the two", []time.Time{at(900), at(500), {}, {}}, true, 3, at(2500), true},
		{"the q-th most recent counts", []time.Time{at(100), at(900), at(500), at(700)}, true, 3, at(2700), true},
		{"not an acceptor: peers only", []time.Time{at(100), at(900), at(500)}, false, 2, at(2500), true},
		{"no contact at all", nil, false, 1, time.Time{}, false},
		{"alone in the view", nil, true, 1, at(3000), true},
	} {
		got, ok := LeaseExpiry(at(1000), tc.contacts, tc.self, tc.q, lease)
		if ok != tc.ok || !got.Equal(tc.want) {
			t.Errorf("%s: got %v %v, want %v %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestRecoveryDelayCoversTheLeaseOnAnyAllowedClock(t *testing.T) {
	lease := 2 * time.Second
	d := RecoveryDelay(lease)
	// The waiter's clock runs fast: its d lasts d/(1+ρ) of real time. The
	// member's clock runs slow: its lease lasts lease/(1−ρ) of real time.
	if real := float64(d) / (1 + MaxClockRate); real < float64(lease)/(1-MaxClockRate) {
		t.Fatalf("RecoveryDelay(%v) = %v lasts %v real, less than the lease's %v", lease, d,
			time.Duration(real), time.Duration(float64(lease)/(1-MaxClockRate)))
	}
}
