package main

import (
	"bufio"
	"flag"
	"fmt"
	"strings"

	kombu "github.com/kombu-go/kombu/runtime"
)

func purgeVerb() *verb {
	var yes bool
	return &verb{
		name:    "purge",
		summary: "remove every ready message from a queue (asks first)",
		usage:   "<queue>",
		help: `Removes every ready message from a queue. It says how many messages the
queue holds and asks for confirmation on stdin (y or yes) unless --yes is
given; anything else aborts (exit 4) with nothing removed. Messages
delivered to consumers and not yet settled are not ready, and stay.

Example:
  kombu purge --url amqp://guest:guest@localhost// orders.dlq
  kombu purge --yes orders.dlq`,
		flags: func(fs *flag.FlagSet, e *env) {
			fs.BoolVar(&yes, "yes", false, "do not ask for confirmation")
		},
		run: func(e *env, args []string) error {
			queue, err := queueArg(args)
			if err != nil {
				return err
			}
			conn, err := e.dial(e.url)
			if err != nil {
				return err
			}
			defer conn.Close()
			q := kombu.Queue{Name: queue}
			ctx, cancel := e.opCtx()
			info, err := q.Inspect(ctx, conn)
			cancel()
			if err != nil {
				return err
			}
			if !yes {
				fmt.Fprintf(e.stderr, "Purge %d ready message(s) from queue %s on %s? [y/N] ", info.Messages, queue, e.maskedURL())
				line, _ := bufio.NewReader(e.stdin).ReadString('\n')
				if !e.stdinIsTTY {
					fmt.Fprintln(e.stderr) // the answer did not echo
				}
				switch strings.ToLower(strings.TrimSpace(line)) {
				case "y", "yes":
				default:
					return errAborted
				}
			}
			ctx, cancel = e.opCtx()
			n, err := q.Purge(ctx, conn)
			cancel()
			if err != nil {
				return err
			}
			if e.output == "json" {
				writeJSON(e.stdout, map[string]any{"queue": queue, "purged": n})
			} else {
				fmt.Fprintf(e.stdout, "purged %d message(s) from queue %s\n", n, queue)
			}
			return nil
		},
	}
}
