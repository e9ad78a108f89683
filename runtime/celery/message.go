package celery

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	kombu "github.com/kombu-go/kombu/runtime"
)

// Celery's defaults: the queue, the direct exchange and the routing key are
// all "celery".
const (
	DefaultQueue      = "celery"
	DefaultExchange   = "celery"
	DefaultRoutingKey = "celery"
)

// Task states, as Celery names them.
const (
	StatePending = "PENDING"
	StateStarted = "STARTED"
	StateRetry   = "RETRY"
	StateSuccess = "SUCCESS"
	StateFailure = "FAILURE"
	StateRevoked = "REVOKED"
)

// ReadyState reports whether a state is final: SUCCESS, FAILURE or REVOKED.
func ReadyState(s string) bool {
	return s == StateSuccess || s == StateFailure || s == StateRevoked
}

var (
	// ErrMalformed: a message is not a Celery task message (wraps kombu.ErrDecode).
	ErrMalformed = fmt.Errorf("celery: malformed task message: %w", kombu.ErrDecode)
	// ErrUnknownTask: no task of that name is registered with the worker.
	ErrUnknownTask = errors.New("celery: task not registered")
	// ErrTaskFailed: the task ended in FAILURE or REVOKED; errors.As a *TaskError for details.
	ErrTaskFailed = errors.New("celery: task failed")
	// ErrResultDecode: a task's result does not decode into the reply type (wraps kombu.ErrDecode).
	ErrResultDecode = fmt.Errorf("celery: result does not decode: %w", kombu.ErrDecode)
	// ErrArguments: a task's arguments do not fit its request message.
	ErrArguments = fmt.Errorf("celery: arguments do not fit the task: %w", kombu.ErrDecode)
	// ErrIgnored: the task was sent with its result ignored; there is nothing to wait for.
	ErrIgnored = errors.New("celery: the task's result is ignored")
)

// Request is one task message, as sent or as received: the fields of
// Celery's protocol v2 headers and body. Args and Kwargs are JSON.
type Request struct {
	ID       string
	Task     string
	Args     []json.RawMessage
	Kwargs   map[string]json.RawMessage
	Embed    map[string]json.RawMessage // callbacks, errbacks, chain, chord (read, passed on by retries)
	RootID   string
	ParentID string
	Group    string
	Retries  int
	ETA      time.Time // zero: run at once
	Expires  time.Time // zero: never
	// TimeLimit and SoftTimeLimit are Celery's timelimit header, [hard, soft]; zero: none.
	TimeLimit, SoftTimeLimit time.Duration
	IgnoreResult             bool
	Shadow                   string
	ArgsRepr, KwargsRepr     string
	Origin                   string
	ReplyTo                  string // for the rpc:// backend
	CorrelationID            string
	Priority                 uint8
	Headers                  map[string]any // as received, for what the fields above do not carry
}

// NewID returns a random (version 4) UUID in Celery's text form.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// origin is Celery's anon_nodename: gen<pid>@<host>.
func origin() string {
	host, _ := os.Hostname()
	return "gen" + strconv.Itoa(os.Getpid()) + "@" + host
}

// isoTime writes t as Python's datetime.isoformat() of an aware UTC time.
func isoTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000000-07:00")
}

// reprMax bounds argsrepr and kwargsrepr as Celery's saferepr does (1024).
const reprMax = 1024

// repr approximates Python's repr of JSON values for argsrepr/kwargsrepr,
// which are informational (logs, flower).
func repr(v any) string {
	var b strings.Builder
	writeRepr(&b, v)
	s := b.String()
	if len(s) > reprMax {
		s = s[:reprMax-3] + "..."
	}
	return s
}

func writeRepr(b *strings.Builder, v any) {
	switch x := v.(type) {
	case nil:
		b.WriteString("None")
	case bool:
		if x {
			b.WriteString("True")
		} else {
			b.WriteString("False")
		}
	case string:
		b.WriteString(pyQuote(x))
	case json.RawMessage:
		var g any
		if json.Unmarshal(x, &g) == nil {
			writeRepr(b, g)
		} else {
			b.Write(x)
		}
	case []json.RawMessage:
		b.WriteByte('(')
		for i, e := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			writeRepr(b, e)
		}
		if len(x) == 1 {
			b.WriteByte(',')
		}
		b.WriteByte(')')
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			writeRepr(b, e)
		}
		b.WriteByte(']')
	case map[string]json.RawMessage:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = e
		}
		writeRepr(b, m)
	case map[string]any:
		b.WriteByte('{')
		for i, k := range sortedKeys(x) {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(pyQuote(k))
			b.WriteString(": ")
			writeRepr(b, x[k])
		}
		b.WriteByte('}')
	default:
		data, err := json.Marshal(x)
		if err != nil {
			fmt.Fprint(b, x)
		} else {
			b.Write(data)
		}
	}
}

// encode builds the v2 message: headers, properties and body.
func (r *Request) encode() (headers map[string]any, body []byte, err error) {
	args := r.Args
	if args == nil {
		args = []json.RawMessage{}
	}
	kwargs := r.Kwargs
	if kwargs == nil {
		kwargs = map[string]json.RawMessage{}
	}
	embed := map[string]json.RawMessage{"callbacks": nil, "errbacks": nil, "chain": nil, "chord": nil}
	for k, v := range r.Embed {
		embed[k] = v
	}
	for k, v := range embed {
		if v == nil {
			embed[k] = json.RawMessage("null")
		}
	}
	body, err = json.Marshal([]any{args, kwargs, embed})
	if err != nil {
		return nil, nil, fmt.Errorf("celery: encode task %s: %w: %v", r.Task, kombu.ErrEncode, err)
	}
	rootID := r.RootID
	if rootID == "" {
		rootID = r.ID
	}
	headers = map[string]any{
		"lang":          "py",
		"task":          r.Task,
		"id":            r.ID,
		"shadow":        nilIfEmpty(r.Shadow),
		"eta":           nil,
		"expires":       nil,
		"group":         nilIfEmpty(r.Group),
		"group_index":   nil,
		"retries":       int64(r.Retries),
		"timelimit":     []any{secondsOrNil(r.TimeLimit), secondsOrNil(r.SoftTimeLimit)},
		"root_id":       rootID,
		"parent_id":     nilIfEmpty(r.ParentID),
		"argsrepr":      r.ArgsRepr,
		"kwargsrepr":    r.KwargsRepr,
		"origin":        r.Origin,
		"ignore_result": r.IgnoreResult,
	}
	if r.ArgsRepr == "" {
		headers["argsrepr"] = repr(args)
	}
	if r.KwargsRepr == "" {
		headers["kwargsrepr"] = repr(kwargs)
	}
	if r.Origin == "" {
		headers["origin"] = origin()
	}
	if !r.ETA.IsZero() {
		headers["eta"] = isoTime(r.ETA)
	}
	if !r.Expires.IsZero() {
		headers["expires"] = isoTime(r.Expires)
	}
	return headers, body, nil
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func secondsOrNil(d time.Duration) any {
	if d <= 0 {
		return nil
	}
	if d%time.Second == 0 {
		return int64(d / time.Second)
	}
	return d.Seconds()
}

// ParseMessage reads a Celery task message: protocol v2 (the task in the
// headers, the body [args, kwargs, embed]) or v1 (everything in a body
// dict). A message that is neither fails with ErrMalformed.
func ParseMessage(msg *kombu.Message) (*Request, error) {
	r := &Request{
		Headers:       msg.Headers,
		ReplyTo:       msg.Properties.ReplyTo,
		CorrelationID: msg.Properties.CorrelationID,
		Priority:      msg.Properties.Priority,
	}
	if ct := msg.Properties.ContentType; ct != "" && ct != "application/json" {
		return r, fmt.Errorf("%w: content type %q (only JSON is read)", ErrMalformed, ct)
	}
	if task, ok := msg.Headers["task"]; ok {
		return r, r.parseV2(msg, task)
	}
	return r, r.parseV1(msg.Body)
}

func (r *Request) parseV2(msg *kombu.Message, task any) error {
	h := msg.Headers
	r.Task = str(task)
	r.ID = str(h["id"])
	if r.Task == "" || r.ID == "" {
		return fmt.Errorf("%w: headers lack a task name or id", ErrMalformed)
	}
	var body []json.RawMessage
	if err := json.Unmarshal(msg.Body, &body); err != nil || len(body) != 3 {
		return fmt.Errorf("%w: task %s[%s]: body is not [args, kwargs, embed]", ErrMalformed, r.Task, r.ID)
	}
	if err := unmarshalNullable(body[0], &r.Args); err != nil {
		return fmt.Errorf("%w: task %s[%s]: args are not a list", ErrMalformed, r.Task, r.ID)
	}
	if err := unmarshalNullable(body[1], &r.Kwargs); err != nil {
		return fmt.Errorf("%w: task %s[%s]: kwargs are not a mapping", ErrMalformed, r.Task, r.ID)
	}
	if err := unmarshalNullable(body[2], &r.Embed); err != nil {
		return fmt.Errorf("%w: task %s[%s]: embed is not a mapping", ErrMalformed, r.Task, r.ID)
	}
	r.RootID, r.ParentID, r.Group = str(h["root_id"]), str(h["parent_id"]), str(h["group"])
	r.Shadow, r.Origin = str(h["shadow"]), str(h["origin"])
	r.ArgsRepr, r.KwargsRepr = str(h["argsrepr"]), str(h["kwargsrepr"])
	r.Retries = int(number(h["retries"]))
	r.IgnoreResult, _ = h["ignore_result"].(bool)
	var err error
	if r.ETA, err = timeHeader(h["eta"]); err != nil {
		return fmt.Errorf("%w: task %s[%s]: eta: %v", ErrMalformed, r.Task, r.ID, err)
	}
	if r.Expires, err = timeHeader(h["expires"]); err != nil {
		return fmt.Errorf("%w: task %s[%s]: expires: %v", ErrMalformed, r.Task, r.ID, err)
	}
	r.TimeLimit, r.SoftTimeLimit = timeLimits(h["timelimit"])
	return nil
}

// parseV1 reads protocol v1: {"task", "id", "args", "kwargs", "retries",
// "eta", "expires", "utc", "callbacks", "errbacks", "timelimit", "taskset",
// "chord"}.
func (r *Request) parseV1(data []byte) error {
	var b struct {
		Task      string                     `json:"task"`
		ID        string                     `json:"id"`
		Args      []json.RawMessage          `json:"args"`
		Kwargs    map[string]json.RawMessage `json:"kwargs"`
		Retries   int                        `json:"retries"`
		ETA       any                        `json:"eta"`
		Expires   any                        `json:"expires"`
		TimeLimit any                        `json:"timelimit"`
		Taskset   string                     `json:"taskset"`
		Callbacks json.RawMessage            `json:"callbacks"`
		Errbacks  json.RawMessage            `json:"errbacks"`
		Chord     json.RawMessage            `json:"chord"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&b); err != nil {
		return fmt.Errorf("%w: no task header, and the body is not a protocol v1 task: %v", ErrMalformed, err)
	}
	if b.Task == "" || b.ID == "" {
		return fmt.Errorf("%w: no task header, and the body names no task and id", ErrMalformed)
	}
	r.Task, r.ID, r.Args, r.Kwargs, r.Retries, r.Group = b.Task, b.ID, b.Args, b.Kwargs, b.Retries, b.Taskset
	r.RootID = r.ID
	r.Embed = map[string]json.RawMessage{"callbacks": b.Callbacks, "errbacks": b.Errbacks, "chord": b.Chord}
	var err error
	if r.ETA, err = timeHeader(b.ETA); err != nil {
		return fmt.Errorf("%w: task %s[%s]: eta: %v", ErrMalformed, r.Task, r.ID, err)
	}
	if r.Expires, err = timeHeader(b.Expires); err != nil {
		return fmt.Errorf("%w: task %s[%s]: expires: %v", ErrMalformed, r.Task, r.ID, err)
	}
	r.TimeLimit, r.SoftTimeLimit = timeLimits(b.TimeLimit)
	return nil
}

func unmarshalNullable(raw json.RawMessage, v any) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	return json.Unmarshal(raw, v)
}

func str(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	}
	return ""
}

func number(v any) float64 {
	switch x := v.(type) {
	case float64:
		return x
	case float32:
		return float64(x)
	case int:
		return float64(x)
	case int8:
		return float64(x)
	case int16:
		return float64(x)
	case int32:
		return float64(x)
	case int64:
		return float64(x)
	case uint8:
		return float64(x)
	case uint16:
		return float64(x)
	case uint32:
		return float64(x)
	case uint64:
		return float64(x)
	case json.Number:
		f, _ := x.Float64()
		return f
	}
	return 0
}

// timeHeader reads Celery's eta/expires: an ISO 8601 string (UTC when it
// has no offset), or nothing.
func timeHeader(v any) (time.Time, error) {
	switch x := v.(type) {
	case nil:
		return time.Time{}, nil
	case time.Time:
		return x, nil
	case string, []byte:
		s := strings.TrimSpace(str(x))
		if s == "" {
			return time.Time{}, nil
		}
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return t, nil
		}
		if t, err := time.ParseInLocation("2006-01-02T15:04:05.999999999", s, time.UTC); err == nil {
			return t, nil
		}
		return time.Time{}, fmt.Errorf("%q is not an ISO 8601 time", s)
	}
	return time.Time{}, fmt.Errorf("%v is not a time", v)
}

func timeLimits(v any) (hard, soft time.Duration) {
	l, ok := v.([]any)
	if !ok || len(l) != 2 {
		return 0, 0
	}
	return time.Duration(number(l[0]) * float64(time.Second)), time.Duration(number(l[1]) * float64(time.Second))
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// pyQuote writes s as Python's repr of a str does, in single quotes.
func pyQuote(s string) string {
	q := strconv.Quote(s)
	if strings.Contains(s, "'") {
		return q
	}
	return "'" + strings.ReplaceAll(q[1:len(q)-1], `\"`, `"`) + "'"
}
