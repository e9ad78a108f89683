"""Python side of the delayed-delivery interop tests (delay_test.go).

Debian bookworm's python3-kombu is 5.2, which predates
kombu.transport.native_delayed_delivery (Kombu 5.5). This script does what
that module and Celery 5.5 do, with Kombu 5.2's public API, following
Kombu 5.5's documented behaviour:

  declare URL QUEUE_TYPE PREFIX
      declare_native_delayed_delivery_exchanges_and_queues: 28 levels of
      durable topic exchanges and queues, the level bindings and the
      delivery exchange. RabbitMQ refuses (PRECONDITION_FAILED) a queue
      redeclared with other arguments, so this fails if Go declared
      anything differently.
  send URL PREFIX EXCHANGE QUEUE ROUTING_KEY COUNTDOWN BODY
      As a Celery 5.5 worker binds its queue (bind_queue_to_native_delayed_
      delivery_exchange: the topic exchange to the delivery exchange and the
      queue to its exchange, both with "#.<routing key>"), then as Celery's
      apply_async(countdown=...) publishes: to celery_delayed_27 with
      calculate_routing_key(countdown, routing_key). Prints {"sent": time}.
  receive URL QUEUE COUNT TIMEOUT [TRANSPORT_OPTIONS]
      Consume COUNT messages; print a JSON list of {body, at, routing_key}
      with the wall-clock time each arrived. Works on any transport (the
      Redis and filesystem tests use it too), with Kombu transport options
      given as JSON.

PREFIX "-" means none (Celery 5.5's names); any other is Kombu main's
prefix argument.
"""

import json
import sys
import time

from kombu import Connection, Consumer, Exchange, Queue

LEVELS = 28


def level_name(level, prefix):
    name = "celery_delayed_%d" % level
    return "%s_%s" % (prefix, name) if prefix else name


def delivery_exchange(prefix):
    return "%s_celery_delayed_delivery" % prefix if prefix else "celery_delayed_delivery"


def declare(url, queue_type, prefix):
    with Connection(url) as conn:
        ch = conn.channel()
        key = "1.#"
        for level in range(LEVELS - 1, -1, -1):
            name = level_name(level, prefix)
            Exchange(name, type="topic")(ch).declare()
            args = {
                "x-queue-type": queue_type,
                "x-overflow": "reject-publish",
                "x-message-ttl": (2 ** level) * 1000,
                "x-dead-letter-exchange": level_name(level - 1, prefix) if level > 0 else delivery_exchange(prefix),
            }
            if queue_type == "quorum":
                args["x-dead-letter-strategy"] = "at-least-once"
            queue = Queue(name, queue_arguments=args)(ch)
            queue.declare()
            queue.bind_to(name, key)
            key = "*." + key
        key = "0.#"
        for level in range(LEVELS - 1, 0, -1):
            Exchange(level_name(level - 1, prefix), type="topic")(ch).bind_to(level_name(level, prefix), key)
            key = "*." + key
        deliver = Exchange(delivery_exchange(prefix), type="topic")(ch)
        deliver.declare()
        deliver.bind_to(level_name(0, prefix), key)


def routing_key(countdown, key):
    return ".".join(format(countdown, "028b")) + "." + key


def send(url, prefix, exchange, queue, key, countdown, body):
    with Connection(url) as conn:
        ch = conn.channel()
        x = Exchange(exchange, type="topic")(ch)
        x.declare()
        bound = key if key.startswith("#") else "#." + key
        x.bind_to(delivery_exchange(prefix), routing_key=bound)
        q = Queue(queue, x, routing_key=bound)(ch)
        q.declare()
        producer = conn.Producer()
        producer.publish(
            body,
            exchange=Exchange(level_name(LEVELS - 1, prefix), type="topic"),
            routing_key=routing_key(countdown, key),
            serializer="json",
        )
        json.dump({"sent": time.time()}, sys.stdout)


def receive(url, queue, count, timeout, options=None):
    got = []

    def on_message(body, message):
        got.append({"body": body, "at": time.time(), "routing_key": message.delivery_info.get("routing_key")})
        message.ack()

    with Connection(url, transport_options=json.loads(options) if options else {}) as conn:
        with Consumer(conn, [Queue(queue, no_declare=True)], callbacks=[on_message]):
            deadline = time.time() + timeout
            while len(got) < count and time.time() < deadline:
                try:
                    conn.drain_events(timeout=0.05)
                except TimeoutError:
                    pass
                except OSError:
                    pass
    json.dump(got, sys.stdout)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    prefix = lambda p: "" if p == "-" else p  # noqa: E731
    if cmd == "declare":
        declare(args[0], args[1], prefix(args[2]))
    elif cmd == "send":
        send(args[0], prefix(args[1]), args[2], args[3], args[4], int(args[5]), args[6])
    elif cmd == "receive":
        receive(args[0], args[1], int(args[2]), float(args[3]), args[4] if len(args) > 4 else None)
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
