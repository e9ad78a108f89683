#!/usr/bin/env python3
"""A Python Kombu peer for otelkombu's cross-language trace tests.

No OpenTelemetry package is installed for Debian's Python here, so this
peer does what an instrumentation's propagator does by hand: it writes and
reads the W3C Trace Context header ("traceparent", version 00) as a string
in the message's headers, with Kombu 5.2 (python3-kombu).

  trace_peer.py publish URL QUEUE
      Starts a trace of its own (random trace and span ids), publishes
      {"from": "python"} to QUEUE through the default exchange with the
      traceparent and a tracestate header, and prints
      {"trace_id", "span_id", "traceparent"}.

  trace_peer.py consume URL QUEUE [--timeout S]
      Takes one message from QUEUE (declared by the Go side), checks its
      traceparent against the W3C format, acks it, and prints
      {"trace_id", "parent_id", "sampled", "tracestate", "body"}.
"""
import json
import os
import re
import sys

from kombu import Connection, Queue

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def publish(url, queue):
    trace_id = os.urandom(16).hex()
    span_id = os.urandom(8).hex()
    traceparent = "00-%s-%s-01" % (trace_id, span_id)
    with Connection(url) as conn:
        producer = conn.Producer(serializer="json")
        producer.publish({"from": "python"}, exchange="", routing_key=queue,
                         headers={"traceparent": traceparent, "tracestate": "py=kombu"})
    print(json.dumps({"trace_id": trace_id, "span_id": span_id, "traceparent": traceparent}))


def consume(url, queue, timeout):
    got = []

    def on_message(body, message):
        got.append((body, message.headers or {}))
        message.ack()

    with Connection(url) as conn:
        q = Queue(queue, no_declare=True)
        with conn.Consumer(q, callbacks=[on_message], accept=["json", "application/data", "text/plain"]):
            while not got:
                conn.drain_events(timeout=timeout)
    body, headers = got[0]
    tp = headers.get("traceparent")
    if isinstance(tp, bytes):
        tp = tp.decode()
    m = TRACEPARENT.match(tp or "")
    if not m or m.group(1) == "0" * 32 or m.group(2) == "0" * 16:
        sys.exit("malformed traceparent header: %r" % (tp,))
    print(json.dumps({
        "trace_id": m.group(1),
        "parent_id": m.group(2),
        "sampled": int(m.group(3), 16) & 1 == 1,
        "tracestate": headers.get("tracestate", ""),
        "body": body if isinstance(body, (str, dict, list)) else repr(body),
    }))


def main():
    cmd, url, queue = sys.argv[1:4]
    timeout = 20.0
    if "--timeout" in sys.argv:
        timeout = float(sys.argv[sys.argv.index("--timeout") + 1])
    if cmd == "publish":
        publish(url, queue)
    elif cmd == "consume":
        consume(url, queue, timeout)
    else:
        sys.exit("unknown command %r" % cmd)


if __name__ == "__main__":
    main()
