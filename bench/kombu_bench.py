#!/usr/bin/env python3
"""Python Kombu's side of `make bench`: the same workloads as the Go harness,
on the same broker, timed here and printed as JSON: the rate (messages/second)
and this process's CPU time per message while timed.

  kombu_bench.py URL EXCHANGE ROUTING_KEY BINDING QUEUE COUNT WORKLOAD

WORKLOAD is publish-confirmed, publish-unconfirmed or consume. The first tenth
of the messages warm up (imports done lazily, connections and channels
opened) and only the rest is timed, as the Go sides get an untimed turn
before theirs. The body is a
100-byte JSON dict with the Go order's fields (Python Kombu has no protobuf
serializer). On memory:// the broker lives in this process, so the script
declares the queue itself, and fills it (untimed) before consuming. On
filesystem:///path the folder is both data folders (control folder
path/control, as kombu-go's shorthand), and the script declares the queue
too: Debian's Kombu 5.2 keeps a filesystem's bindings in process memory.
"""
import json
import os
import socket
import sys
import time

from kombu import Connection, Consumer, Exchange, Producer, Queue

url, exchange_name, routing_key, binding, queue_name, count, workload = sys.argv[1:8]
count = int(count)
warm = count // 10
in_process = url.startswith("memory:")
folder = url[len("filesystem://"):] if url.startswith("filesystem://") else None
# SQLAlchemy (sqla+...): the table names come in KOMBU_BENCH_TRANSPORT_OPTIONS,
# and, as on a folder, Debian's Kombu 5.2 keeps the bindings in process
# memory, so the script declares the queue itself.
sql = url.startswith("sqla+")
# SQS: Kombu keeps its exchanges' bindings in process memory too.
sql = sql or url.startswith("sqs:")
body = {"order_id": "A-0000001", "customer": "ada", "amount_cents": 1250, "items": ["tea", "mug"]}
body["customer"] += "." * (100 - len(json.dumps(body)))
# The exchange is declared as the Go side declares it: on Redis and in
# memory Kombu keeps exchange types in client memory only.
exchange = Exchange(exchange_name, "topic", durable=True)
queue = Queue(queue_name, exchange, routing_key=binding, no_declare=not (in_process or folder or sql))


def timed(fn):
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - cpu


def publish(conn, confirm, n, warm):
    producer = Producer(conn, exchange=exchange)
    if in_process or folder or sql:
        queue(conn.default_channel).declare()
    channel = conn.channel()
    sent = 0

    def send(n):
        nonlocal sent
        for _ in range(n):
            producer.publish(body, routing_key=routing_key, serializer="json")
        sent += n
        if not confirm and url.startswith("amqp"):
            # As the Go side does: unconfirmed publishing is done once the
            # broker has queued the messages, not when the last is written.
            while channel.queue_declare(queue_name, passive=True).message_count < sent:
                time.sleep(0.0002)
    send(warm)
    return timed(lambda: send(n))


def consume(conn):
    if in_process:
        publish(conn, False, count, 0)
    seen = 0

    def on_message(_body, message):
        nonlocal seen
        seen += 1
        message.ack()

    def drain(until):
        while seen < until:
            try:
                conn.drain_events(timeout=10)
            except socket.timeout:
                sys.exit(f"consume stalled at {seen} of {count}")

    with Consumer(conn, queues=[queue], callbacks=[on_message],
                  accept=["json", "application/x-protobuf"], prefetch_count=100):
        drain(warm)
        return timed(lambda: drain(count))


opts = {"confirm_publish": True} if workload == "publish-confirmed" else {}
opts.update(json.loads(os.environ.get("KOMBU_BENCH_TRANSPORT_OPTIONS", "{}")))
if folder:
    opts.update(data_folder_in=folder, data_folder_out=folder, control_folder=folder + "/control")
with Connection(url, transport_options=opts) as conn:
    if workload == "publish-confirmed":
        elapsed, cpu = publish(conn, True, count - warm, warm)
    elif workload == "publish-unconfirmed":
        elapsed, cpu = publish(conn, False, count - warm, warm)
    elif workload == "consume":
        elapsed, cpu = consume(conn)
    else:
        sys.exit("unknown workload " + workload)
print(json.dumps({"rate": (count - warm) / elapsed, "seconds": elapsed, "cpu_us_per_msg": cpu / (count - warm) * 1e6}))
