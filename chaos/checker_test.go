package chaos

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// The checker classifies a history the way Jepsen's total-queue checker
// does. No broker needed.
func TestChecker(t *testing.T) {
	l := NewLedger("t")
	pub := func(err error) string {
		id := l.Begin()
		l.End(id, err)
		return id
	}
	confirmedOnce := pub(nil)
	confirmedTwice := pub(nil)
	lost := pub(nil)
	unknownDelivered := pub(fmt.Errorf("publish: %w", context.DeadlineExceeded))
	unknownNot := pub(context.Canceled)
	failedDelivered := pub(errors.New("nacked"))
	pending := l.Begin()

	l.Acked(l.Delivered("c", confirmedOnce, false), nil)
	l.Delivered("c", confirmedTwice, false)
	l.Acked(l.Delivered("c", confirmedTwice, true), nil)
	l.Acked(l.Delivered("c", unknownDelivered, false), nil)
	l.Delivered("c", failedDelivered, false)
	l.Delivered("c", failedDelivered, false) // a second copy, not a redelivery
	l.Delivered("c", "stranger", false)

	r := l.Check()
	eq := func(what string, got []string, want ...string) {
		t.Helper()
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	if r.Sent != 7 || r.Confirmed != 3 || r.Unknown != 2 || r.Failed != 1 || r.Pending != 1 {
		t.Errorf("counts: %s", r.Summary())
	}
	if r.Consumed != 4 || r.Deliveries != 6 {
		t.Errorf("consumed/deliveries: %s", r.Summary())
	}
	eq("lost", r.Lost, lost)
	eq("duplicated", r.Duplicated, confirmedTwice, failedDelivered)
	eq("repeat not redelivered", r.RepeatNotRedelivered, failedDelivered)
	eq("recovered", r.Recovered, unknownDelivered, failedDelivered)
	eq("failed but delivered", r.FailedButDelivered, failedDelivered)
	eq("unexpected", r.Unexpected, "stranger")
	eq("never acked", r.NeverAcked, failedDelivered)
	_ = unknownNot
	_ = pending
	if r.Faults != 0 || r.Recovery != 0 {
		t.Errorf("no faults: %s", r.Summary())
	}
}

func TestCheckerRecovery(t *testing.T) {
	l := NewLedger("t")
	l.Inject()
	l.Remove()
	removed := l.Windows()[0].Removed
	time.Sleep(30 * time.Millisecond)
	id := l.Begin()
	l.End(id, nil)
	l.Delivered("c", id, false)
	r := l.Check()
	if r.Recovery < 30*time.Millisecond || r.Recovery > time.Second || r.Reconnect > r.Recovery {
		t.Errorf("recovery %v reconnect %v after removal at %v", r.Recovery, r.Reconnect, removed)
	}
	// A second fault nothing recovered from makes the worst case "never".
	l.Inject()
	l.Remove()
	if r := l.Check(); r.Recovery != -1 || len(r.Recoveries) != 2 {
		t.Errorf("unrecovered fault: recovery %v (%v)", r.Recovery, r.Recoveries)
	}
}

func TestFiguresTable(t *testing.T) {
	l := NewLedger("t")
	l.End(l.Begin(), nil)
	r := l.Check()
	var b strings.Builder
	rows := []Row{
		{Test: "10", Fault: "x", Transport: "redis", Status: "pass"},
		{Test: "2", Fault: "kill | 9", Transport: "amqp", Result: &r, Status: "FAIL", Notes: []string{"n"}},
		{Test: "1b", Fault: "y", Transport: "amqp", Status: "skipped"},
	}
	if err := WriteFigures(&b, rows, "# h\n\n"); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	i1b, i2, i10 := strings.Index(out, "| 1b |"), strings.Index(out, "| 2 |"), strings.Index(out, "| 10 |")
	if i1b < 0 || i2 < 0 || i10 < 0 || i1b > i2 || i2 > i10 {
		t.Errorf("rows out of order:\n%s", out)
	}
	if !strings.Contains(out, `kill \| 9`) || !strings.Contains(out, "**FAIL**") {
		t.Errorf("table:\n%s", out)
	}
}
