package main

import (
	"errors"
	"fmt"
	"strconv"
	"text/tabwriter"

	"github.com/kombu-go/kombu/runtime/transport"
)

func queuesVerb() *verb {
	return &verb{
		name:    "queues",
		summary: "list queues: names, depth, consumers where the transport can tell",
		usage:   "[queue ...]",
		help: `Shows queues with their ready messages and, where the broker knows them,
their consumers ("-" where it does not).

Given names, it asks about each (a passive declaration, on every
transport); a queue that does not exist is shown so, and the command exits
3. Without names it lists the queues the transport can enumerate:
  redis://   the queues named in Kombu's binding sets (every queue declared
             with a binding), with their depths; Redis does not know
             consumers.
  amqp://    AMQP 0-9-1 cannot list queues: name them (or use rabbitmqctl
             list_queues or the management API); named, RabbitMQ reports
             depth and consumers.
  others     name them.

Example:
  kombu queues --url redis://localhost:6379/0
  kombu queues --url amqp://guest:guest@localhost// orders orders.dlq`,
		run: runQueues,
	}
}

func runQueues(e *env, args []string) error {
	tc, err := e.open(e.url)
	if err != nil {
		return err
	}
	defer tc.Close()
	u, _ := transport.Parse(e.url)
	knowsConsumers := u.Scheme == "amqp" || u.Scheme == "amqps" || u.Scheme == "pyamqp"
	type row struct {
		info    transport.QueueInfo
		missing bool
	}
	var rows []row
	var failure error
	if len(args) == 0 {
		l, ok := tc.(transport.QueueLister)
		if !ok {
			return usagef("the %s transport cannot list its queues: name them (kombu queues <queue> ...)", u.Scheme)
		}
		ctx, cancel := e.opCtx()
		infos, err := l.ListQueues(ctx)
		cancel()
		if err != nil {
			return err
		}
		for _, in := range infos {
			rows = append(rows, row{info: in})
		}
	} else {
		for _, name := range args {
			ctx, cancel := e.opCtx()
			in, err := tc.DeclareQueue(ctx, transport.Queue{Name: name, Passive: true})
			cancel()
			switch {
			case errors.Is(err, transport.ErrNotFound):
				rows = append(rows, row{info: transport.QueueInfo{Name: name}, missing: true})
				if failure == nil {
					failure = fmt.Errorf("queue %s: %w", name, transport.ErrNotFound)
				}
			case err != nil:
				return fmt.Errorf("queue %s: %w", name, err)
			default:
				if !knowsConsumers {
					in.Consumers = -1
				}
				rows = append(rows, row{info: in})
			}
		}
	}
	if e.output == "json" {
		for _, r := range rows {
			m := map[string]any{"name": r.info.Name, "exists": !r.missing}
			if !r.missing {
				m["messages"] = r.info.Messages
				if r.info.Consumers >= 0 {
					m["consumers"] = r.info.Consumers
				} else {
					m["consumers"] = nil
				}
			}
			writeJSON(e.stdout, m)
		}
		return failure
	}
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "QUEUE\tMESSAGES\tCONSUMERS")
	for _, r := range rows {
		if r.missing {
			fmt.Fprintf(w, "%s\t(not found)\t\n", r.info.Name)
			continue
		}
		c := "-"
		if r.info.Consumers >= 0 {
			c = strconv.Itoa(r.info.Consumers)
		}
		fmt.Fprintf(w, "%s\t%d\t%s\n", r.info.Name, r.info.Messages, c)
	}
	w.Flush()
	return failure
}
