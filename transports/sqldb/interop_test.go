package sqldb_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kombu-go/kombu/internal/brokertest"
	kombu "github.com/kombu-go/kombu/runtime"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
)

// Interop with Python Kombu's SQLAlchemy transport (Debian's
// python3-kombu 5.2.4 with python3-sqlalchemy 1.4, psycopg2 and PyMySQL),
// through ../../interop/kombu_peer.py, on each database: Python publishes
// and Go consumes, and the other way round, json and msgpack, compressed
// and not.

const python = "/usr/bin/python3"

func requirePython(t *testing.T, db *database) {
	t.Helper()
	mod := map[string]string{"postgresql": "psycopg2", "mysql": "pymysql", "sqlite": "sqlite3"}[db.name]
	if out, err := exec.Command(python, "-c", "import kombu, sqlalchemy, msgpack, "+mod).CombinedOutput(); err != nil {
		brokertest.Unavailable(t, "Python Kombu's SQL transport not available ("+string(bytes.TrimSpace(out))+
			"); apt-get install python3-kombu python3-sqlalchemy python3-psycopg2 python3-pymysql python3-msgpack")
	}
}

// pythonURL is the database's URL as a Kombu user writes it, and the
// transport options naming the test's tables.
func (db *database) pythonURL() (string, string) {
	var u string
	switch db.name {
	case "postgresql":
		u = "sqla+" + strings.Replace(db.base, "postgresql://", "postgresql+psycopg2://", 1)
	case "mysql":
		u = "sqla+" + strings.Replace(db.base, "mysql://", "mysql+pymysql://", 1)
	case "sqlite":
		u = "sqla+sqlite:///" + db.file
	}
	// Kombu 5.2 to 5.5 pass every other transport option to SQLAlchemy's
	// create_engine, which refuses polling_interval: Python polls every
	// second.
	opts, _ := json.Marshal(map[string]string{"queue_tablename": db.prefix + "kombu_queue", "message_tablename": db.prefix + "kombu_message"})
	return u, string(opts)
}

func peerScript() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "interop", "kombu_peer.py")
}

// peer runs kombu_peer.py cmd on the database's test tables.
func (db *database) peer(t *testing.T, cmd string, in any, args ...string) []byte {
	t.Helper()
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	u, opts := db.pythonURL()
	full := append([]string{peerScript(), cmd, u}, args...)
	full = append(full, "--transport-options", opts)
	c := exec.Command(python, full...)
	c.Stdin = bytes.NewReader(data)
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		t.Fatalf("python %s: %v\nstdout: %s\nstderr: %s", cmd, err, stdout.String(), stderr.String())
	}
	return stdout.Bytes()
}

type pyMessage struct {
	Body         json.RawMessage `json:"body"`
	ContentType  string          `json:"content_type"`
	Headers      map[string]any  `json:"headers"`
	Properties   map[string]any  `json:"properties"`
	DeliveryInfo map[string]any  `json:"delivery_info"`
}

// goURL is the URL the Go side dials: Kombu's own form, with kombu-go's
// options in it.
func (db *database) goURL() string {
	u, _ := db.pythonURL()
	return u + "?table_name_prefix=" + db.prefix + "&polling_interval=0.05"
}

func dialKombu(t *testing.T, url string) *kombu.Connection {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := kombu.Dial(c, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

var interopBody = map[string]any{"order_id": "A-1", "amount": 12.5, "items": []any{"tea", "mug"}, "note": "naïve ☕"}

// Python publishes first, on tables it makes itself (its models'
// create_all): Go reads Kombu's own DDL.
func TestInteropPythonPublishesGoConsumes(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *database) {
		requirePython(t, db)
		queue := "interop.py2go." + randomHex(4)
		var msgs []map[string]any
		for _, ser := range []string{"json", "msgpack"} {
			for _, comp := range []string{"", "zlib", "bzip2"} {
				m := map[string]any{"body": interopBody, "routing_key": queue, "serializer": ser,
					"headers": map[string]any{"serializer": ser, "compression": comp, "attempt": 2}, "correlation_id": "c-" + ser + comp}
				if comp != "" {
					m["compression"] = comp
				}
				msgs = append(msgs, m)
			}
		}
		db.peer(t, "publish", msgs)
		conn := dialKombu(t, db.goURL())
		for i, want := range msgs {
			var msg *kombu.Message
			deadline := time.Now().Add(10 * time.Second)
			for {
				var err error
				msg, err = kombu.Queue{Name: queue}.Get(ctx(t), conn, kombu.WithAccept("json", "msgpack"))
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("message %d: %v", i, err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			var got map[string]any
			if err := msg.Decode(&got); err != nil {
				t.Fatalf("message %d (%v): decode: %v", i, want["correlation_id"], err)
			}
			if !sameJSON(got, interopBody) {
				t.Errorf("message %d (%v): %v, want %v", i, want["correlation_id"], got, interopBody)
			}
			if msg.Properties.CorrelationID != want["correlation_id"] || msg.DeliveryInfo.RoutingKey != queue {
				t.Errorf("message %d: correlation id %q, delivery %+v", i, msg.Properties.CorrelationID, msg.DeliveryInfo)
			}
			if err := msg.Ack(); err != nil {
				t.Fatal(err)
			}
		}
		// Go acks delete Kombu's rows (Kombu itself keeps them, invisible).
		_, message, _ := db.tables()
		d := db.sql(t)
		transporttest.Eventually(t, "the acked rows to go", func() bool { return count(t, d, "SELECT count(*) FROM "+message) == 0 })
	})
}

func TestInteropGoPublishesPythonConsumes(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *database) {
		requirePython(t, db)
		queue := "interop.go2py." + randomHex(4)
		conn := dialKombu(t, db.goURL())
		if _, err := (kombu.Queue{Name: queue}).Declare(ctx(t), conn); err != nil {
			t.Fatal(err)
		}
		p := kombu.NewProducer(conn, kombu.WithRoutingKey(queue))
		type sent struct{ ser, comp string }
		var all []sent
		for _, ser := range []string{"json", "msgpack"} {
			for _, comp := range []string{"", "zlib", "bzip2"} {
				opts := []kombu.PublishOption{kombu.WithSerializer(ser), kombu.WithHeaders(map[string]any{"ser": ser, "comp": comp})}
				if comp != "" {
					opts = append(opts, kombu.WithCompression(comp))
				}
				if err := p.Publish(ctx(t), interopBody, opts...); err != nil {
					t.Fatal(err)
				}
				all = append(all, sent{ser, comp})
			}
		}
		var got []pyMessage
		out := db.peer(t, "consume", nil, queue, strconv.Itoa(len(all)), "--accept", "json,msgpack")
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("python consume output %q: %v", out, err)
		}
		for i, m := range got {
			var body map[string]any
			if err := json.Unmarshal(m.Body, &body); err != nil || !sameJSON(body, interopBody) {
				t.Errorf("message %d: Python decoded %s (%v)", i, m.Body, err)
			}
			if m.Headers["ser"] != all[i].ser || m.Headers["comp"] != all[i].comp {
				t.Errorf("message %d: headers %v, want ser=%s comp=%s (in order)", i, m.Headers, all[i].ser, all[i].comp)
			}
			if m.DeliveryInfo["routing_key"] != queue {
				t.Errorf("message %d: delivery info %v", i, m.DeliveryInfo)
			}
		}
	})
}

// Go and Python publish to the same queue, on tables either side made:
// both must get ids from the same source. On MariaDB, SQLAlchemy takes
// Kombu's ids from sequences and makes the id columns without
// AUTO_INCREMENT, so a Go insert without an id would fail on Python's
// tables, and a Python insert on tables without the sequences.
func TestInteropBothPublish(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *database) {
		requirePython(t, db)
		for _, maker := range []string{"python", "go"} {
			t.Run(maker+" makes the tables", func(t *testing.T) {
				db := newDB(t, db.name)
				queue := "interop.both." + randomHex(4)
				if maker == "python" {
					db.peer(t, "declare", map[string]any{"queues": []any{map[string]any{"name": queue}}})
				}
				conn := dialKombu(t, db.goURL())
				if _, err := (kombu.Queue{Name: queue}).Declare(ctx(t), conn); err != nil {
					t.Fatal(err)
				}
				p := kombu.NewProducer(conn, kombu.WithRoutingKey(queue))
				publishGo := func(n int) {
					if err := p.Publish(ctx(t), map[string]any{"from": "go", "n": n}); err != nil {
						t.Fatalf("Go publish %d: %v", n, err)
					}
				}
				publishGo(1)
				db.peer(t, "publish", []map[string]any{
					{"body": map[string]any{"from": "python", "n": 2}, "routing_key": queue},
					{"body": map[string]any{"from": "python", "n": 3}, "routing_key": queue},
				})
				publishGo(4)
				seen := map[float64]string{}
				for len(seen) < 4 {
					var msg *kombu.Message
					transporttest.Eventually(t, "the next message", func() bool {
						var err error
						msg, err = kombu.Queue{Name: queue}.Get(ctx(t), conn)
						return err == nil
					})
					var body struct {
						From string  `json:"from"`
						N    float64 `json:"n"`
					}
					if err := msg.Decode(&body); err != nil {
						t.Fatal(err)
					}
					if _, dup := seen[body.N]; dup {
						t.Fatalf("message %v twice", body.N)
					}
					seen[body.N] = body.From
					if err := msg.Ack(); err != nil {
						t.Fatal(err)
					}
				}
				want := map[float64]string{1: "go", 2: "python", 3: "python", 4: "go"}
				if !reflect.DeepEqual(seen, want) {
					t.Errorf("got %v, want %v", seen, want)
				}
			})
		}
	})
}

// sameJSON compares two values as JSON (numbers as float64).
func sameJSON(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	var x, y any
	json.Unmarshal(ja, &x)
	json.Unmarshal(jb, &y)
	return reflect.DeepEqual(x, y)
}
