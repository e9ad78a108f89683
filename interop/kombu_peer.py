#!/usr/bin/env python3
"""A Python Kombu peer for kombu-go's interop tests.

The Go tests run it with /usr/bin/python3 (Debian's python3-kombu) to publish
messages that Go consumes, and to consume messages that Go published, on a
real broker. It speaks JSON on stdin and stdout so the Go side can compare
exact values.

  kombu_peer.py publish URL < messages.json
      messages.json is a list of objects: body, exchange, routing_key, and any
      of serializer, compression, priority, headers, expiration (seconds),
      correlation_id, reply_to, message_id, type, app_id, content_type,
      content_encoding. Prints {"published": N}.

  kombu_peer.py consume URL QUEUE COUNT [--accept json,...] [--timeout S] [--requeue]
      Takes COUNT messages from QUEUE (declared by the Go side; not declared
      here) and prints them as a JSON list of objects: body (decoded), raw
      (base64 of the raw body), content_type, content_encoding, headers,
      properties, delivery_info. Acks each unless --requeue.
"""
import argparse
import base64
import json
import socket
import sys
import time

from kombu import Connection, Consumer, Producer, Queue

PUBLISH_KEYS = ("serializer", "compression", "priority", "headers", "expiration",
                "correlation_id", "reply_to", "message_id", "type", "app_id",
                "content_type", "content_encoding")


def publish(args):
    messages = json.load(sys.stdin)
    with Connection(args.url) as conn:
        producer = Producer(conn)
        for m in messages:
            kwargs = {k: m[k] for k in PUBLISH_KEYS if k in m}
            producer.publish(m["body"], exchange=m.get("exchange", ""),
                             routing_key=m["routing_key"], **kwargs)
    print(json.dumps({"published": len(messages)}))


def jsonable(value):
    if isinstance(value, (bytes, bytearray)):
        return {"__bytes__": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def consume(args):
    out = []

    def on_message(body, message):
        out.append({
            "body": jsonable(body),
            "raw": base64.b64encode(message.body if isinstance(message.body, bytes)
                                    else message.body.encode()).decode(),
            "content_type": message.content_type,
            "content_encoding": message.content_encoding,
            "headers": jsonable(message.headers),
            "properties": jsonable({k: v for k, v in message.properties.items()
                                    if k != "application_headers"}),
            "delivery_info": jsonable({k: message.delivery_info.get(k)
                                       for k in ("exchange", "routing_key", "redelivered")}),
        })
        if args.requeue:
            message.requeue()
        else:
            message.ack()

    with Connection(args.url) as conn:
        queue = Queue(args.queue, no_declare=True)
        with Consumer(conn, queues=[queue], callbacks=[on_message],
                      accept=args.accept.split(","), prefetch_count=args.count):
            deadline = time.monotonic() + args.timeout
            while len(out) < args.count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    conn.drain_events(timeout=min(left, 1.0))
                except socket.timeout:
                    pass
    print(json.dumps(out))
    if len(out) < args.count:
        sys.exit(f"got {len(out)} of {args.count} messages from {args.queue} before the timeout")


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("publish")
    p.add_argument("url")
    p.set_defaults(fn=publish)
    c = sub.add_parser("consume")
    c.add_argument("url")
    c.add_argument("queue")
    c.add_argument("count", type=int)
    c.add_argument("--accept", default="json")
    c.add_argument("--timeout", type=float, default=10.0)
    c.add_argument("--requeue", action="store_true")
    c.set_defaults(fn=consume)
    args = parser.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
