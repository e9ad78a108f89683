// Package celery speaks Celery's task protocol over kombu-go, so that Go and
// Python Celery share tasks: a Go Client sends tasks a Python Celery worker
// runs and reads their results, and a Go Worker runs tasks a Python client
// sends and writes results Python's AsyncResult.get() reads.
//
// Import it as
//
//	import "github.com/kombu-go/kombu/runtime/celery"
//
// # The model
//
// A task is a name ("proj.tasks.add") and a message: positional arguments,
// keyword arguments and options (countdown or ETA, expiry, retries,
// priority, time limits). The Client publishes it as a Celery protocol v2
// message, the message Celery 5's apply_async sends: the task's metadata in
// the headers (task, id, root_id, eta, expires, retries, timelimit,
// argsrepr, kwargsrepr, origin, ...), correlation_id = the task id, and a
// JSON body [args, kwargs, {"callbacks", "errbacks", "chain", "chord"}], to
// the "celery" exchange and queue with routing key "celery" unless told
// otherwise. It returns an AsyncResult.
//
// Whoever runs the task writes its state to a result backend, which the
// AsyncResult reads:
//
//   - RedisBackend keeps, as Celery's redis:// backend does, the JSON
//     document {"status", "result", "traceback", "children", "date_done",
//     "task_id"} under celery-task-meta-<id> (for a day) and publishes it on
//     the channel of that name, which a waiting reader subscribes to.
//   - RPCBackend is Celery's rpc://: the worker sends the same document as a
//     message to the caller's reply queue (the task's reply_to), with
//     correlation_id = the task id; the caller's one reply queue serves all
//     its tasks.
//
// A task's result is JSON. Proto messages map to it as the generated code
// does: a request's fields are the task's keyword arguments by proto field
// name (or positional arguments in field-number order), and a reply message
// is the JSON object of its fields, or, for a wrapper type
// (google.protobuf.Int64Value, ...) or a message of one field, that one
// value, so that a Go task can answer a Python caller that expects a plain
// number or string.
//
// A Worker consumes a queue, runs the TaskFunc registered for each
// message's task name and writes the outcome: SUCCESS with the return
// value, FAILURE with the exception type, message and traceback (a Go
// error becomes Python's builtins.Exception unless it is a *TaskError), or
// RETRY when the task asks for it with Retry(...), in which case the
// message is sent again as Celery does, with retries incremented and an
// ETA. Messages with an ETA are held, unacknowledged, until they are due
// without keeping other tasks waiting; expired ones are marked REVOKED and
// not run; unknown task names are logged, rejected and marked FAILURE
// (NotRegistered), as Celery does; malformed messages are logged and
// rejected, never acknowledged and lost.
package celery
