#!/usr/bin/env python3
"""Python Kombu's side of `make bench`: the same workloads as the Go harness,
on the same broker, timed here and printed as JSON rates (messages/second).

  kombu_bench.py URL EXCHANGE ROUTING_KEY QUEUE COUNT WORKLOAD

WORKLOAD is publish-confirmed, publish-unconfirmed or consume. The body is a
~100-byte JSON dict; Python Kombu has no protobuf serializer.
"""
import json
import socket
import sys
import time

from kombu import Connection, Consumer, Exchange, Producer, Queue

url, exchange, routing_key, queue, count, workload = sys.argv[1:7]
count = int(count)
body = {"order_id": "A-0000001", "customer": "ada", "amount_cents": 1250, "items": ["tea", "mug"]}


def publish(confirm):
    opts = {"confirm_publish": True} if confirm else {}
    with Connection(url, transport_options=opts) as conn:
        # The exchange is declared as the Go side declares it: on Redis Kombu
        # keeps exchange types in client memory only.
        producer = Producer(conn, exchange=Exchange(exchange, "topic", durable=True))
        start = time.perf_counter()
        for _ in range(count):
            producer.publish(body, routing_key=routing_key, serializer="json")
        if not confirm and url.startswith("amqp"):
            # As the Go side does: unconfirmed publishing is done once the
            # broker has queued the messages, not when the last is written.
            channel = conn.channel()
            while channel.queue_declare(queue, passive=True).message_count < count:
                time.sleep(0.0002)
        return time.perf_counter() - start


def consume():
    seen = 0

    def on_message(_body, message):
        nonlocal seen
        seen += 1
        message.ack()

    with Connection(url) as conn:
        with Consumer(conn, queues=[Queue(queue, no_declare=True)], callbacks=[on_message],
                      accept=["json", "application/x-protobuf"], prefetch_count=100):
            start = time.perf_counter()
            while seen < count:
                try:
                    conn.drain_events(timeout=10)
                except socket.timeout:
                    sys.exit(f"consume stalled at {seen} of {count}")
            return time.perf_counter() - start


if workload == "publish-confirmed":
    elapsed = publish(True)
elif workload == "publish-unconfirmed":
    elapsed = publish(False)
elif workload == "consume":
    elapsed = consume()
else:
    sys.exit("unknown workload " + workload)
print(json.dumps({"rate": count / elapsed, "seconds": elapsed}))
