package celery

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Meta is a task's state as a result backend holds it: the document Celery
// stores (Redis) or sends (rpc://).
type Meta struct {
	TaskID    string          `json:"task_id"`
	Status    string          `json:"status"`
	Result    json.RawMessage `json:"result"`
	Traceback *string         `json:"traceback"`
	Children  []any           `json:"children"`
	DateDone  *string         `json:"date_done,omitempty"`
	GroupID   string          `json:"group_id,omitempty"`
	ParentID  string          `json:"parent_id,omitempty"`
}

// newMeta makes the document for a state; date_done is set for final
// states, as Python's datetime.utcnow().isoformat() writes it.
func newMeta(id, status string, result json.RawMessage, traceback string) *Meta {
	m := &Meta{TaskID: id, Status: status, Result: result, Children: []any{}}
	if len(m.Result) == 0 {
		m.Result = json.RawMessage("null")
	}
	if traceback != "" {
		m.Traceback = &traceback
	}
	if ReadyState(status) {
		d := time.Now().UTC().Format("2006-01-02T15:04:05.000000")
		m.DateDone = &d
	}
	return m
}

// Ready reports whether the state is final.
func (m *Meta) Ready() bool { return ReadyState(m.Status) }

// Err returns the task's failure as a *TaskError (FAILURE, REVOKED), or nil.
func (m *Meta) Err(task string) error {
	if m.Status != StateFailure && m.Status != StateRevoked {
		return nil
	}
	e := &TaskError{TaskID: m.TaskID, Task: task, Status: m.Status}
	if m.Traceback != nil {
		e.Traceback = *m.Traceback
	}
	var exc struct {
		Type    string          `json:"exc_type"`
		Module  string          `json:"exc_module"`
		Message json.RawMessage `json:"exc_message"`
	}
	if json.Unmarshal(m.Result, &exc) == nil && exc.Type != "" {
		e.Type, e.Module = exc.Type, exc.Module
		e.Message = excMessage(exc.Message)
	} else {
		e.Type, e.Message = "Exception", string(m.Result)
	}
	return e
}

// excMessage turns Celery's exc_message (the exception's args, a list, or
// a string from older versions) into text: one argument as itself, several
// joined as Python's str of a tuple would show them.
func excMessage(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var args []any
	if json.Unmarshal(raw, &args) == nil {
		if len(args) == 1 {
			if s, ok := args[0].(string); ok {
				return s
			}
		}
		parts := make([]string, len(args))
		for i, a := range args {
			parts[i] = repr(a)
		}
		if len(args) == 1 {
			return parts[0]
		}
		return "(" + strings.Join(parts, ", ") + ")"
	}
	return string(raw)
}

// TaskError is a task's failure as the result backend reports it: Celery's
// exception type, module, message and the traceback. It matches
// ErrTaskFailed with errors.Is.
//
// Returned by a TaskFunc, it sets the exception the worker reports (Type
// and Module name the Python class, for example "ValueError" in
// "builtins", so that Python re-raises that class).
type TaskError struct {
	TaskID    string
	Task      string
	Status    string // FAILURE or REVOKED
	Type      string // Python's exception class name, e.g. "ZeroDivisionError"
	Module    string // its module, e.g. "builtins"
	Message   string
	Traceback string
}

func (e *TaskError) Error() string {
	var b strings.Builder
	b.WriteString("celery: task ")
	if e.Task != "" {
		b.WriteString(e.Task)
	}
	if e.TaskID != "" {
		b.WriteString("[" + e.TaskID + "]")
	}
	if e.Status == StateRevoked {
		b.WriteString(" revoked")
	} else {
		b.WriteString(" failed")
	}
	if e.Type != "" {
		b.WriteString(": " + e.Type)
		if e.Message != "" {
			b.WriteString(": " + e.Message)
		}
	} else if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	return b.String()
}

func (e *TaskError) Is(target error) bool { return target == ErrTaskFailed }

// excResult is the result document of a failure, as Celery's
// prepare_exception writes it.
func (e *TaskError) excResult() json.RawMessage {
	typ, mod := e.Type, e.Module
	if typ == "" {
		typ, mod = "Exception", "builtins"
	}
	doc := map[string]any{"exc_type": typ, "exc_message": []any{e.Message}, "exc_module": nil}
	if mod != "" {
		doc["exc_module"] = mod
	}
	data, _ := json.Marshal(doc)
	return data
}

// Backend is a result backend: where workers write task states and
// callers read them.
type Backend interface {
	// Store writes a task's state for the caller of req.
	Store(ctx context.Context, req *Request, meta *Meta) error
	// Meta returns a task's current state (PENDING when there is none yet).
	Meta(ctx context.Context, taskID string) (*Meta, error)
	// Wait blocks until the task is in a final state, or ctx ends.
	Wait(ctx context.Context, taskID string) (*Meta, error)
	// Forget drops the task's state.
	Forget(ctx context.Context, taskID string) error
	// ReplyTo is the reply_to property tasks are sent with: the caller's
	// reply queue for rpc://, empty otherwise.
	ReplyTo() string
	Close() error
}

// storeCtx bounds a store by the caller's context, or by 30 seconds when
// it has no deadline (a worker's store must not wait forever on an
// unreachable backend).
func storeCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, 30*time.Second)
}

func backendErr(what, id string, err error) error {
	return fmt.Errorf("celery: result backend: %s %s: %w", what, id, err)
}
