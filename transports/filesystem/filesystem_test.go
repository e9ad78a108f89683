//go:build unix

package filesystem_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
	"github.com/kombu-go/kombu/transports/filesystem"
)

func open(t *testing.T, url string) transport.Conn {
	t.Helper()
	c, err := dial(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func dial(url string) (transport.Conn, error) {
	u, err := transport.Parse(url)
	if err != nil {
		return nil, err
	}
	return filesystem.Driver{}.Open(context.Background(), u, transport.Config{})
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), transporttest.DefaultTimeout)
	t.Cleanup(cancel)
	return c
}

// messageFiles lists the message files of a folder, sorted.
func messageFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".msg") {
			out = append(out, e.Name())
		}
	}
	return out
}

func get(t *testing.T, c transport.Conn, queue string) *transport.Delivery {
	t.Helper()
	d, err := c.Get(ctx(t), queue, false)
	if err != nil {
		t.Fatalf("get from %q: %v", queue, err)
	}
	return d
}

func wantEmpty(t *testing.T, c transport.Conn, queue string) {
	t.Helper()
	if d, err := c.Get(ctx(t), queue, true); !errors.Is(err, transport.ErrEmpty) {
		t.Fatalf("get from %q: %v, %v; want it empty", queue, d, err)
	}
}

var fileNameRE = regexp.MustCompile(`^[0-9]+_[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\.(.+)\.msg$`)

func TestURLs(t *testing.T) {
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out")
	for _, d := range []string{in, out} {
		if err := os.Mkdir(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	// Kombu's options, with the folders crossed as a producer and its
	// consumer cross them.
	producer := open(t, "filesystem://?data_folder_in="+in+"&data_folder_out="+out+"&control_folder="+filepath.Join(dir, "control"))
	consumer := open(t, "filesystem://?data_folder_in="+out+"&data_folder_out="+in+"&control_folder="+filepath.Join(dir, "control")+"&polling_interval=0.05")
	transporttest.Publish(t, producer, &transport.Publishing{RoutingKey: "q", Body: []byte("across")})
	if files := messageFiles(t, out); len(files) != 1 || !fileNameRE.MatchString(files[0]) {
		t.Fatalf("data_folder_out holds %q", files)
	}
	wantEmpty(t, producer, "q") // it reads data_folder_in
	if d := get(t, consumer, "q"); string(d.Body) != "across" {
		t.Fatalf("the consumer got %q", d.Body)
	}
	if _, err := os.Stat(filepath.Join(dir, "control")); err != nil {
		t.Errorf("the control folder was not made: %v", err)
	}

	for url, want := range map[string]string{
		"filesystem://host/x":                             "names no host",
		"filesystem:///" + dir + "?nope=1":                `unknown option "nope"`,
		"filesystem:///" + dir + "?store_processed=maybe": "store_processed",
		"filesystem:///" + dir + "?polling_interval=-1":   "polling_interval",
		"filesystem:///" + dir + "?data_folder_in=":       "empty",
		"filesystem+x:///" + dir:                          "suffix",
		"filesystem://?data_folder_in=" + in + "&x=1&y=2": `unknown option "x"`,
	} {
		_, err := dial(url)
		if !errors.Is(err, transport.ErrInvalidURL) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want ErrInvalidURL saying %q", url, err, want)
		}
	}
}

func TestBadFolders(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	// A folder this process cannot write to: as root, permissions do not
	// stop it, but /sys does.
	readOnly := filepath.Join(dir, "read-only")
	if os.Geteuid() == 0 {
		readOnly = "/sys"
	} else if err := os.Mkdir(readOnly, 0o555); err != nil {
		t.Fatal(err)
	}
	if f, err := os.CreateTemp(readOnly, "probe"); err == nil {
		f.Close()
		os.Remove(f.Name())
		t.Fatalf("%s is writable here; the check needs a folder that is not", readOnly)
	}
	for _, c := range []struct{ url, folder, says string }{
		{"filesystem://" + missing, missing, "does not exist"},
		{"filesystem://?data_folder_in=" + dir + "&data_folder_out=" + missing, missing, "data_folder_out"},
		{"filesystem://" + file, file, "not a folder"},
		{"filesystem://" + readOnly, readOnly, "not writable"},
		{"filesystem://?data_folder_in=" + readOnly + "&data_folder_out=" + dir, readOnly, "data_folder_in"},
		{"filesystem://" + dir + "?store_processed=1&processed_folder=" + missing, missing, "processed_folder"},
	} {
		_, err := dial(c.url)
		if err == nil || !strings.Contains(err.Error(), c.folder) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v; want an error naming %s and saying %q", c.url, err, c.folder, c.says)
		}
	}
}

func TestLayout(t *testing.T) {
	dir := t.TempDir()
	c := open(t, "filesystem://"+dir)
	transporttest.Publish(t, c, &transport.Publishing{RoutingKey: "fsq", Body: []byte(`{"id": 1}`),
		Headers:    map[string]any{"trace": "abc"},
		Properties: transport.Properties{ContentType: "application/json", ContentEncoding: "utf-8", CorrelationID: "c1"}})
	files := messageFiles(t, dir)
	if len(files) != 1 {
		t.Fatalf("the folder holds %q", files)
	}
	m := fileNameRE.FindStringSubmatch(files[0])
	if m == nil || m[1] != "fsq" {
		t.Fatalf("file name %q is not <ms>_<uuid4>.fsq.msg", files[0])
	}
	raw, err := os.ReadFile(filepath.Join(dir, files[0]))
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		Properties struct {
			DeliveryTag string `json:"delivery_tag"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatal(err)
	}
	want := `{"body": "eyJpZCI6IDF9", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"trace": "abc"}, ` +
		`"properties": {"correlation_id": "c1", "delivery_mode": 2, "delivery_info": {"exchange": "", "routing_key": "fsq"}, ` +
		`"priority": 0, "body_encoding": "base64", "delivery_tag": "` + env.Properties.DeliveryTag + `"}}`
	if string(raw) != want {
		t.Errorf("file content\n got  %s\n want %s", raw, want)
	}

	// Bindings: Kombu 5.3's control files, newest row first.
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "tx", Type: transport.ExchangeTopic})
	transporttest.Bind(t, c, transport.Binding{Source: "tx", Destination: "fsq", RoutingKey: "a.#"})
	transporttest.Bind(t, c, transport.Binding{Source: "tx", Destination: "é", RoutingKey: "*.b"})
	transporttest.Bind(t, c, transport.Binding{Source: "tx", Destination: "fsq", RoutingKey: "a.#"}) // once
	table, err := os.ReadFile(filepath.Join(dir, "control", "tx.exchange"))
	if err != nil {
		t.Fatal(err)
	}
	if want := `[["*.b", "^.*?[^\\.]\\.b$", "\u00e9"], ["a.#", "^a\\..*?$", "fsq"]]`; string(table) != want {
		t.Errorf("control file\n got  %s\n want %s", table, want)
	}
	if err := c.Unbind(ctx(t), transport.Binding{Source: "tx", Destination: "é", RoutingKey: "*.b"}); err != nil {
		t.Fatal(err)
	}
	table, _ = os.ReadFile(filepath.Join(dir, "control", "tx.exchange"))
	if want := `[["a.#", "^a\\..*?$", "fsq"]]`; string(table) != want {
		t.Errorf("control file after unbind\n got  %s\n want %s", table, want)
	}
}

// pyFile writes a message file as Python Kombu names and writes it.
func pyFile(t *testing.T, dir string, ms int64, queue, body string) string {
	t.Helper()
	name := filepathName(ms, queue)
	env := `{"body": "` + body + `", "content-encoding": "utf-8", "content-type": "text/plain", "headers": {}, "properties": ` +
		`{"delivery_mode": 2, "delivery_info": {"exchange": "", "routing_key": "` + queue + `"}, "priority": 0, "body_encoding": "utf-8", ` +
		`"delivery_tag": "00000000-0000-4000-8000-000000000000"}}`
	if err := os.WriteFile(filepath.Join(dir, name), []byte(env), 0o666); err != nil {
		t.Fatal(err)
	}
	return name
}

func filepathName(ms int64, queue string) string {
	return strings.Join([]string{itoa(ms), "_", "3e7f6ff2-6667-463a-aa56-", itoa(100000000000 + ms), ".", queue, ".msg"}, "")
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// Kombu takes any file whose name contains ".<queue>.msg": its queue "b"
// takes queue "a.b"'s files. kombu-go reads the queue out of the name.
func TestQueueNamesAreNotSubstrings(t *testing.T) {
	dir := t.TempDir()
	c := open(t, "filesystem://"+dir)
	pyFile(t, dir, 1, "a.b", "for a.b")
	pyFile(t, dir, 2, "b", "for b")
	pyFile(t, dir, 3, "x.b.msg", "for x.b.msg")
	if info := transporttest.DeclareQueue(t, c, transport.Queue{Name: "b"}); info.Messages != 1 {
		t.Errorf("queue b counts %d messages, want 1", info.Messages)
	}
	if d := get(t, c, "b"); string(d.Body) != "for b" || d.Queue != "b" {
		t.Errorf("queue b gave %q", d.Body)
	}
	wantEmpty(t, c, "b")
	for _, q := range []string{"a.b", "x.b.msg"} {
		if d := get(t, c, q); string(d.Body) != "for "+q {
			t.Errorf("queue %s gave %q", q, d.Body)
		}
	}
}

// Files are taken oldest first by their milliseconds as a number, where
// Kombu sorts the names as text.
func TestOrderByMilliseconds(t *testing.T) {
	dir := t.TempDir()
	c := open(t, "filesystem://"+dir)
	pyFile(t, dir, 1000, "q", "second")
	pyFile(t, dir, 999, "q", "first")
	pyFile(t, dir, 10000, "q", "third")
	for _, want := range []string{"first", "second", "third"} {
		if d := get(t, c, "q"); string(d.Body) != want {
			t.Fatalf("got %q, want %q", d.Body, want)
		}
	}
}

// What else lives in the folder is left alone; a file being written is
// left until it is whole; a message file that is not a Kombu envelope is
// moved aside; and the consumer goes on through all of it.
func TestForeignAndHalfWrittenFiles(t *testing.T) {
	dir := t.TempDir()
	c := open(t, "filesystem://"+dir+"?polling_interval=0.05")
	foreign := []string{"README", "notes.msg", "x.q.msg.bak", "1_id.q.txt"}
	for _, name := range foreign {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("not mine"), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "5_x.q.msg"), 0o777); err != nil { // a folder named like a message
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	garbage := filepathName(1, "q")
	notEnvelope := filepathName(2, "q")
	os.WriteFile(filepath.Join(dir, garbage), []byte("\x00\x01 not json"), 0o666)
	os.WriteFile(filepath.Join(dir, notEnvelope), []byte(`{"hello": "world"}`), 0o666)
	for _, n := range []string{garbage, notEnvelope} {
		os.Chtimes(filepath.Join(dir, n), old, old)
	}
	// A Python writer holding its lock, half-way through.
	writing := filepathName(3, "q")
	w, err := os.OpenFile(filepath.Join(dir, writing), os.O_WRONLY|os.O_CREATE, 0o666)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := syscall.Flock(int(w.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	w.WriteString(`{"body": "hal`)
	// A file Python has just made and not yet written.
	empty := filepathName(4, "q")
	os.WriteFile(filepath.Join(dir, empty), nil, 0o666)
	pyFile(t, dir, 5, "q", "whole")

	sub, err := c.Consume(ctx(t), transport.ConsumeSpec{Queues: []string{"q"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Cancel(ctx(t))
	recv := func() *transport.Delivery {
		t.Helper()
		select {
		case d := <-sub.Deliveries():
			if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
				t.Fatal(err)
			}
			return d
		case <-time.After(transporttest.DefaultTimeout):
			t.Fatalf("no delivery: %v", sub.Err())
		}
		return nil
	}
	if d := recv(); string(d.Body) != "whole" {
		t.Fatalf("first delivery %q, want the whole message", d.Body)
	}
	// The half-written file is still there, untaken; finished and
	// unlocked, it is taken.
	if _, err := os.Stat(filepath.Join(dir, writing)); err != nil {
		t.Fatalf("the file being written: %v", err)
	}
	w.WriteString(`f", "content-type": "text/plain", "properties": {"body_encoding": "utf-8", "delivery_info": {"routing_key": "q"}}}`)
	syscall.Flock(int(w.Fd()), syscall.LOCK_UN)
	w.Close()
	os.WriteFile(filepath.Join(dir, empty), []byte(`{"body": "late", "properties": {"body_encoding": "utf-8"}}`), 0o666)
	got := []string{string(recv().Body), string(recv().Body)}
	slices.Sort(got)
	if !slices.Equal(got, []string{"half", "late"}) {
		t.Fatalf("after the writers finished: %q", got)
	}
	unreadable, _ := os.ReadDir(filepath.Join(dir, ".kombu-go", "unreadable"))
	var aside []string
	for _, e := range unreadable {
		aside = append(aside, e.Name())
	}
	if want := []string{garbage, notEnvelope}; !slices.Equal(aside, want) {
		t.Errorf("moved aside %q, want %q", aside, want)
	}
	for _, name := range append(foreign, "5_x.q.msg") {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("foreign %s: %v", name, err)
		}
	}
	if len(messageFiles(t, dir)) != 2 { // notes.msg and the folder
		t.Errorf("the folder holds %q", messageFiles(t, dir))
	}
}

// A requeued or returned message goes back under its own name, so that it
// keeps its place, marked redelivered; an acked one is gone, or kept in
// processed_folder with store_processed.
func TestSettlingFiles(t *testing.T) {
	dir := t.TempDir()
	processed := filepath.Join(dir, "done")
	os.Mkdir(processed, 0o777)
	c := open(t, "filesystem://"+dir+"?store_processed=yes&processed_folder="+processed)
	transporttest.Publish(t, c, &transport.Publishing{RoutingKey: "q", Body: []byte("1")})
	transporttest.Publish(t, c, &transport.Publishing{RoutingKey: "q", Body: []byte("2")})
	names := messageFiles(t, dir)
	d := get(t, c, "q")
	if files := messageFiles(t, dir); !slices.Equal(files, names[1:]) {
		t.Fatalf("after a get the folder holds %q", files)
	}
	if err := d.Acknowledger.Reject(d.Tag, true); err != nil {
		t.Fatal(err)
	}
	if files := messageFiles(t, dir); !slices.Equal(files, names) {
		t.Fatalf("after a requeue the folder holds %q, want %q", files, names)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, names[0]))
	if !strings.Contains(string(raw), `"headers": {"redelivered": true}`) || !strings.Contains(string(raw), `"redelivered": true}, "priority"`) {
		t.Errorf("the requeued file is not marked redelivered: %s", raw)
	}
	d = get(t, c, "q")
	if string(d.Body) != "1" || !d.Redelivered {
		t.Fatalf("after a requeue: %q, redelivered %t", d.Body, d.Redelivered)
	}
	if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
		t.Fatal(err)
	}
	if kept, _ := os.ReadDir(processed); len(kept) != 1 || kept[0].Name() != names[0] {
		t.Errorf("processed_folder holds %v, want %s", kept, names[0])
	}
	get(t, c, "q") // unsettled at Close
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if files := messageFiles(t, dir); !slices.Equal(files, names[1:]) {
		t.Fatalf("after Close the folder holds %q, want %q", files, names[1:])
	}
	taken, _ := os.ReadDir(filepath.Join(dir, ".kombu-go", "taken"))
	if len(taken) != 0 {
		t.Errorf("the closed connection left %v in the taken folder", taken)
	}
}

// A data folder that goes away under a consumer (an unmounted share) fails
// the calls that need it, saying which folder; the consumer keeps trying,
// and goes on once the folder is back.
func TestFolderGoneAndBack(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "spool")
	os.Mkdir(dir, 0o777)
	c := open(t, "filesystem://"+dir+"?polling_interval=0.02")
	sub, err := c.Consume(ctx(t), transport.ConsumeSpec{Queues: []string{"q"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Cancel(ctx(t))
	away := filepath.Join(parent, "away")
	if err := os.Rename(dir, away); err != nil {
		t.Fatal(err)
	}
	_, err = c.Get(ctx(t), "q", true)
	if err == nil || errors.Is(err, transport.ErrEmpty) || !strings.Contains(err.Error(), dir) {
		t.Errorf("get with the folder gone: %v; want an error naming %s", err, dir)
	}
	err = c.Publish(ctx(t), &transport.Publishing{RoutingKey: "q", Body: []byte("lost?")})
	if err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("publish with the folder gone: %v; want an error naming %s", err, dir)
	}
	time.Sleep(100 * time.Millisecond) // the consumer meets the missing folder
	if err := os.Rename(away, dir); err != nil {
		t.Fatal(err)
	}
	transporttest.Publish(t, c, &transport.Publishing{RoutingKey: "q", Body: []byte("back")})
	select {
	case d, ok := <-sub.Deliveries():
		if !ok || string(d.Body) != "back" {
			t.Fatalf("after the folder came back: %v, %v (%v)", d, ok, sub.Err())
		}
		d.Acknowledger.Ack(d.Tag, false)
	case <-time.After(transporttest.DefaultTimeout):
		t.Fatalf("the consumer did not go on: %v", sub.Err())
	}
}

// A folder named like a message file is not a message: it is not counted,
// not taken (before, each poll renamed it into the taker folder and back,
// and a listing could miss it meanwhile), and stays where it is.
func TestFolderNamedLikeAMessage(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, filepathName(1, "q")), 0o777); err != nil {
		t.Fatal(err)
	}
	c := open(t, "filesystem://"+dir+"?polling_interval=0.05")
	info, err := c.DeclareQueue(ctx(t), transport.Queue{Name: "q"})
	if err != nil {
		t.Fatal(err)
	}
	if info.Messages != 0 {
		t.Errorf("the queue counts %d messages, want 0", info.Messages)
	}
	if _, err := c.Get(ctx(t), "q", true); !errors.Is(err, transport.ErrEmpty) {
		t.Errorf("Get: %v, want ErrEmpty", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, filepathName(1, "q"))); err != nil || !fi.IsDir() {
		t.Errorf("the folder: %v", err)
	}
}
