package generator

import (
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/compiler/protogen"

	kombuv1 "github.com/kombu-go/kombu/gen/kombu/v1"
)

// celeryPackage is the runtime's Celery package.
const celeryPackage = protogen.GoImportPath("github.com/kombu-go/kombu/runtime/celery")

// celeryTask is an rpc method marked as a Celery task.
type celeryTask struct {
	method *protogen.Method
	opts   *kombuv1.CeleryTask
	ignore bool // sent with ignore_result; nothing to await
}

// newCeleryTask checks a method's celery_task option; nil when it has none.
func newCeleryTask(m *protogen.Method) (*celeryTask, error) {
	opts := extension[*kombuv1.CeleryTask](m.Desc.Options(), kombuv1.E_CeleryTask)
	if opts == nil {
		return nil, nil
	}
	if extension[*kombuv1.Route](m.Desc.Options(), kombuv1.E_Route) != nil {
		return nil, methodError(m, "a method is either a route or a Celery task, not both (it has route and celery_task options)")
	}
	if m.Desc.IsStreamingClient() || m.Desc.IsStreamingServer() {
		return nil, methodError(m, "streaming methods are not supported; a Celery task takes one request")
	}
	name := opts.GetName()
	if name == "" {
		return nil, methodError(m, "celery_task needs a name (the task's registered name, e.g. \"proj.tasks.add\")")
	}
	if strings.ContainsAny(name, " \t\r\n") {
		return nil, methodError(m, "celery_task name %q contains white space", name)
	}
	for field, v := range map[string]string{"queue": opts.GetQueue(), "exchange": opts.GetExchange(), "routing_key": opts.GetRoutingKey()} {
		if strings.ContainsAny(v, " \t\r\n") {
			return nil, methodError(m, "celery_task %s %q contains white space", field, v)
		}
	}
	empty := m.Output.Desc.FullName() == "google.protobuf.Empty"
	t := &celeryTask{method: m, opts: opts}
	switch opts.GetResult() {
	case kombuv1.CeleryResult_CELERY_RESULT_UNSPECIFIED:
		t.ignore = empty
	case kombuv1.CeleryResult_CELERY_RESULT_REPLY:
		if empty {
			return nil, methodError(m, "celery_task result REPLY needs a reply type other than google.protobuf.Empty")
		}
	case kombuv1.CeleryResult_CELERY_RESULT_IGNORE:
		if !empty {
			return nil, methodError(m, "celery_task result IGNORE needs the method to return google.protobuf.Empty, not %s", m.Output.Desc.FullName())
		}
		t.ignore = true
	default:
		return nil, methodError(m, "unknown celery_task result %v", opts.GetResult())
	}
	switch opts.GetArgs() {
	case kombuv1.CeleryArgs_CELERY_ARGS_UNSPECIFIED, kombuv1.CeleryArgs_CELERY_ARGS_KWARGS, kombuv1.CeleryArgs_CELERY_ARGS_POSITIONAL:
	default:
		return nil, methodError(m, "unknown celery_task args %v", opts.GetArgs())
	}
	return t, nil
}

// celery prints a service's Celery client, handler interface and
// registration function.
func (g *fileGenerator) celery(s *service, n *namer) {
	svc := s.proto.GoName
	client, newClient := n.name(svc+"CeleryClient"), n.name("New"+svc+"CeleryClient")
	handler, register := n.name(svc+"CeleryHandler"), n.name("Register"+svc+"CeleryTasks")
	specs := make([]string, len(s.tasks))
	for i, t := range s.tasks {
		specs[i] = n.name(unexport(svc) + t.method.GoName + "CeleryTask")
	}
	client_ := celeryPackage.Ident("Client")
	ctx := contextPackage.Ident("Context")

	for i, t := range s.tasks {
		new(doc).text(fmt.Sprintf("%s is where and how task %s of %s.%s is sent.",
			specs[i], strconv.Quote(t.opts.GetName()), fullName(s), t.method.Desc.Name())).print(g.GeneratedFile)
		g.P("var ", specs[i], " = ", celeryPackage.Ident("TaskSpec"), "{")
		g.P("Name: ", strconv.Quote(t.opts.GetName()), ",")
		if q := t.opts.GetQueue(); q != "" {
			g.P("Queue: ", strconv.Quote(q), ",")
		}
		if x := t.opts.GetExchange(); x != "" {
			g.P("Exchange: ", strconv.Quote(x), ",")
		}
		if k := t.opts.GetRoutingKey(); k != "" {
			g.P("RoutingKey: ", strconv.Quote(k), ",")
		}
		if t.opts.GetArgs() == kombuv1.CeleryArgs_CELERY_ARGS_POSITIONAL {
			g.P("Args: ", celeryPackage.Ident("Positional"), ",")
		}
		if t.ignore {
			g.P("IgnoreResult: true,")
		}
		g.P("}")
		g.P()
	}

	new(doc).text(fmt.Sprintf("%s sends the Celery tasks of the %s service, to a Python Celery worker or a Go one (%s), and returns their typed results.",
		client, fullName(s), register)).source(s.proto.Comments).print(g.GeneratedFile)
	g.P("type ", client, " struct {")
	g.P("client *", client_)
	g.P("}")
	g.P()
	new(doc).text(fmt.Sprintf("%s sends the %s service's tasks with c; c's result backend (celery.WithBackend) is where results are read.", newClient, fullName(s))).print(g.GeneratedFile)
	g.P("func ", newClient, "(c *", client_, ") *", client, " {")
	g.P("return &", client, "{client: c}")
	g.P("}")
	g.P()
	for i, t := range s.tasks {
		m := t.method
		d := new(doc).text(fmt.Sprintf("%s sends task %s with the request's fields as its %s.", m.GoName,
			strconv.Quote(t.opts.GetName()), argsText(t))).source(m.Comments)
		if t.ignore {
			d.text("Its result is ignored: the AsyncResult has only the task's id.").print(g.GeneratedFile)
			g.P("func (c *", client, ") ", m.GoName, "(ctx ", ctx, ", req *", m.Input.GoIdent, ", opts ...", celeryPackage.Ident("SendOption"), ") (*", celeryPackage.Ident("AsyncResult"), ", error) {")
			g.P("return c.client.SendProto(ctx, ", specs[i], ", req, opts...)")
			g.P("}")
			g.P()
			continue
		}
		d.text(fmt.Sprintf("Get on the result waits for the task and decodes its return value into the reply, %s; a failure is a *celery.TaskError.", m.Output.GoIdent.GoName)).print(g.GeneratedFile)
		g.P("func (c *", client, ") ", m.GoName, "(ctx ", ctx, ", req *", m.Input.GoIdent, ", opts ...", celeryPackage.Ident("SendOption"), ") (", celeryPackage.Ident("Result"), "[*", m.Output.GoIdent, "], error) {")
		g.P("return ", celeryPackage.Ident("Call"), "[*", m.Output.GoIdent, "](ctx, c.client, ", specs[i], ", req, opts...)")
		g.P("}")
		g.P()
	}

	new(doc).text(fmt.Sprintf("%s runs the Celery tasks of the %s service in a Go worker. A returned error fails the task (a *celery.TaskError chooses the Python exception); celery.Retry(err, countdown) retries it.",
		handler, fullName(s))).print(g.GeneratedFile)
	g.P("type ", handler, " interface {")
	for _, t := range s.tasks {
		m := t.method
		g.P(m.Comments.Leading, m.GoName, "(ctx ", ctx, ", req *", m.Input.GoIdent, ") (*", m.Output.GoIdent, ", error)")
	}
	g.P("}")
	g.P()
	new(doc).text(fmt.Sprintf("%s registers h's tasks with w by their Celery names. A worker consumes one queue: tasks sent to other queues (celery_task's queue, exchange, routing_key) need a worker of their own, made with celery.WithRoute.", register)).print(g.GeneratedFile)
	g.P("func ", register, "(w *", celeryPackage.Ident("Worker"), ", h ", handler, ") {")
	for i, t := range s.tasks {
		opt := ""
		if t.opts.GetAcksLate() {
			opt = ", " + g.QualifiedGoIdent(celeryPackage.Ident("TaskAcksLate")) + "(true)"
		}
		g.P(celeryPackage.Ident("RegisterProto"), "(w, ", specs[i], ".Name, h.", t.method.GoName, opt, ")")
	}
	g.P("}")
	g.P()
}

func argsText(t *celeryTask) string {
	if t.opts.GetArgs() == kombuv1.CeleryArgs_CELERY_ARGS_POSITIONAL {
		return "positional arguments, in field-number order"
	}
	return "keyword arguments, by proto field name"
}
