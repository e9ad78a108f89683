//go:build unix

package filesystem_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
)

// TestDelayLayout: a delayed message waits as a file in
// .kombu-go/delayed/, named by its wall-clock due time, where no Kombu
// reader looks, and is moved into the folder when due.
func TestDelayLayout(t *testing.T) {
	dir := t.TempDir()
	c := open(t, "filesystem://"+dir)
	before := time.Now()
	if err := c.Publish(ctx(t), &transport.Publishing{RoutingKey: "work", Body: []byte("later"), Delay: 700 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if files := messageFiles(t, dir); len(files) != 0 {
		t.Fatalf("message files before the delay passed: %q", files)
	}
	delayed := messageFiles(t, filepath.Join(dir, ".kombu-go", "delayed"))
	if len(delayed) != 1 || !strings.HasSuffix(delayed[0], ".work.msg") {
		t.Fatalf("delayed folder holds %q, want one file of queue work", delayed)
	}
	due, _, _ := strings.Cut(delayed[0], "_")
	if ms := before.Add(700 * time.Millisecond).UnixMilli(); due < itoa(ms) || len(due) != len(itoa(ms)) {
		t.Errorf("delayed file %q: want its wall-clock due time, about %d", delayed[0], ms)
	}
	wantEmpty(t, c, "work")
	// A delay of days is a file named days ahead.
	if err := c.Publish(ctx(t), &transport.Publishing{RoutingKey: "someday", Body: []byte("x"), Delay: 72 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	for _, f := range messageFiles(t, filepath.Join(dir, ".kombu-go", "delayed")) {
		if strings.HasSuffix(f, ".someday.msg") {
			ms, _, _ := strings.Cut(f, "_")
			// Due times are rounded up to the next millisecond, so that
			// nothing comes early: up to 1 ms past now plus the delay.
			if want := time.Now().Add(72 * time.Hour).UnixMilli(); ms < itoa(want-5000) || ms > itoa(want+1) {
				t.Errorf("a three-day delay: %s, want it due about %d", f, want)
			}
		}
	}
	time.Sleep(time.Second)
	if d := get(t, c, "work"); string(d.Body) != "later" {
		t.Errorf("got %q", d.Body)
	}
	if left := messageFiles(t, filepath.Join(dir, ".kombu-go", "delayed")); len(left) != 1 || !strings.HasSuffix(left[0], ".someday.msg") {
		t.Errorf("delayed folder holds %q, want only the three-day message", left)
	}
}

// TestDelaySurvivesItsProcess: a delayed message outlives the connection
// (and process) that published it, and another process delivers it when
// it is due.
func TestDelaySurvivesItsProcess(t *testing.T) {
	dir := t.TempDir()
	url := "filesystem://" + dir
	c, err := dial(url)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := c.Publish(ctx(t), &transport.Publishing{RoutingKey: "work", Body: []byte("remind"), Delay: time.Second}); err != nil {
		t.Fatal(err)
	}
	c.Close() // no connection of this process moves anything now
	time.Sleep(time.Until(start.Add(1500 * time.Millisecond)))
	if files := messageFiles(t, dir); len(files) != 0 {
		t.Fatalf("moved with no connection open: %q", files)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), drainEnv+"="+url+" work")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "got remind") {
		t.Fatalf("a new process did not deliver the delayed message: %s", out)
	}
}

// TestDelayLateness measures how late delayed messages arrive.
func TestDelayLateness(t *testing.T) {
	if testing.Short() {
		t.Skip("takes several seconds")
	}
	c := open(t, "filesystem://"+t.TempDir())
	p50, p99, worst := transporttest.Lateness(transporttest.DelayLateness(t, c, "work", 40))
	t.Logf("filesystem: 40 messages delayed 1-3.9 s: lateness p50 %v p99 %v max %v", p50, p99, worst)
	if worst > time.Second {
		t.Errorf("a message arrived %v late, want within a second", worst)
	}
}
