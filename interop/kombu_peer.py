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

  kombu_peer.py declare URL < topology.json
      Declares {"exchanges": [{"name", "type"}], "queues": [{"name",
      "bindings": [{"exchange", "type", "routing_key"}]}]} with Kombu.
      Prints {"declared": N}.

  kombu_peer.py simple-put URL NAME [--buffer] < bodies.json
      Puts each body of the JSON list with conn.SimpleQueue(NAME).put(body)
      (conn.SimpleBuffer with --buffer), declaring what Kombu's SimpleQueue
      declares. Prints {"put": N}.

  kombu_peer.py simple-get URL NAME COUNT [--buffer] [--timeout S]
      Takes COUNT messages with conn.SimpleQueue(NAME).get(timeout=...),
      acking each (a SimpleBuffer's need no ack), and prints them as
      consume does.

  Options added for the Redis interop tests (all optional):
    --transport-options JSON      (publish, consume, declare) Kombu transport
                                  options, such as {"global_keyprefix": "x:",
                                  "visibility_timeout": 1}; Kombu reads them
                                  from here, not from the URL's query.
    --exchange NAME:TYPE          (publish, repeatable) declare the exchange
                                  first, so Kombu routes by its type (a
                                  virtual transport only knows the types of
                                  exchanges declared in its own process).
    --bind EXCHANGE:TYPE:KEY      (consume, repeatable) declare the exchange
                                  and bind QUEUE to it before consuming (a
                                  fanout binding makes Kombu consume through
                                  PUB/SUB).
    --hold S                      (consume) keep the messages unacknowledged
                                  for S seconds after taking them, then ack.

  Options added for the codec interop tests (all optional):
    --kombu53-json                (publish, consume) replace the json
                                  serializer with Kombu 5.3's, which wraps
                                  datetime, date, time, Decimal, UUID and
                                  bytes in {"__type__", "__value__"}
                                  envelopes. Debian's Kombu 5.2.4 predates
                                  them; this is kombu/utils/json.py of 5.3+
                                  in a few lines.
    --typed                       (publish) bodies may hold {"__py__": T,
                                  "v": V} markers for Python values: T is
                                  datetime, date, time, Decimal, UUID,
                                  bytes (V in base64) or tuple. (consume)
                                  each message also gets "pytypes", the
                                  decoded body with every value as
                                  [python type name, text], and
                                  "reencoded", the body written again by the
                                  message's serializer (json: compact
                                  separators, no ASCII escaping) in base64.

  Options added for the filesystem interop tests (all optional):
    --kombu53-filesystem          (publish, consume, declare) give the
                                  filesystem transport Kombu 5.3's control
                                  folder: bindings in
                                  control_folder/<exchange>.exchange files
                                  and fanout. Debian's Kombu 5.2.4 keeps
                                  bindings in process memory and has no
                                  filesystem fanout; this is the Channel
                                  code of kombu/transport/filesystem.py of
                                  5.3 to 5.5, as it is there.
    --declare QUEUE:EXCHANGE:TYPE:KEY
                                  (publish, repeatable) declare the queue
                                  bound to the exchange before publishing
                                  (Kombu 5.2.4's filesystem transport routes
                                  only through bindings its own process
                                  made).
"""
import argparse
import base64
import datetime
import decimal
import json
import socket
import sys
import time
import uuid

from kombu import Connection, Consumer, Exchange, Producer, Queue, binding

PUBLISH_KEYS = ("serializer", "compression", "priority", "headers", "expiration",
                "correlation_id", "reply_to", "message_id", "type", "app_id",
                "content_type", "content_encoding")


def _as(t, v):
    return {"__type__": t, "__value__": v}


class Kombu53Encoder(json.JSONEncoder):
    """kombu.utils.json.JSONEncoder as of Kombu 5.3 (envelopes)."""

    def default(self, o):
        if isinstance(o, datetime.datetime):
            return _as("datetime", o.isoformat())
        if isinstance(o, datetime.date):
            return _as("date", o.isoformat())
        if isinstance(o, datetime.time):
            return _as("time", o.isoformat())
        if isinstance(o, decimal.Decimal):
            return _as("decimal", str(o))
        if isinstance(o, uuid.UUID):
            return _as("uuid", {"hex": o.hex})
        if isinstance(o, bytes):
            try:
                return _as("bytes", o.decode("utf-8"))
            except UnicodeDecodeError:
                return _as("base64", base64.b64encode(o).decode("utf-8"))
        return super().default(o)


KOMBU53_DECODERS = {
    "datetime": datetime.datetime.fromisoformat,
    "date": lambda o: datetime.datetime.fromisoformat(o).date(),
    "time": datetime.time.fromisoformat,
    "decimal": decimal.Decimal,
    "uuid": lambda o: uuid.UUID(**o),
    "bytes": lambda o: o.encode("utf-8"),
    "base64": lambda o: base64.b64decode(o.encode("utf-8")),
}


def kombu53_object_hook(o):
    if o.keys() == {"__type__", "__value__"}:
        decoder = KOMBU53_DECODERS.get(o["__type__"])
        if decoder is None:
            raise ValueError("Unsupported type", o)
        return decoder(o["__value__"])
    return o


def kombu53_dumps(obj, **kwargs):
    return json.dumps(obj, cls=Kombu53Encoder, **kwargs)


def kombu53_loads(s):
    if isinstance(s, (bytes, bytearray, memoryview)):
        s = bytes(s).decode("utf-8")
    return json.loads(s, object_hook=kombu53_object_hook)


def install_kombu53_json():
    from kombu.serialization import registry
    registry.register("json", kombu53_dumps, kombu53_loads,
                      content_type="application/json", content_encoding="utf-8")
    registry._set_default_serializer("json")


def install_kombu53_filesystem():
    """Kombu 5.3's filesystem Channel additions (PR #1499), verbatim."""
    from collections import namedtuple
    from pathlib import Path

    from kombu.exceptions import ChannelError
    from kombu.transport import filesystem as fs
    from kombu.utils.encoding import bytes_to_str, str_to_bytes
    from kombu.utils.json import dumps, loads

    lock, unlock, LOCK_EX, LOCK_SH = fs.lock, fs.unlock, fs.LOCK_EX, fs.LOCK_SH
    exchange_queue_t = namedtuple("exchange_queue_t",
                                  ["routing_key", "pattern", "queue"])

    class Channel(fs.Channel):
        supports_fanout = True

        def get_table(self, exchange):
            file = self.control_folder / f"{exchange}.exchange"
            try:
                f_obj = file.open("r")
                try:
                    lock(f_obj, LOCK_SH)
                    exchange_table = loads(bytes_to_str(f_obj.read()))
                    return [exchange_queue_t(*q) for q in exchange_table]
                finally:
                    unlock(f_obj)
                    f_obj.close()
            except FileNotFoundError:
                return []
            except OSError:
                raise ChannelError(f"Cannot open {file}")

        def _queue_bind(self, exchange, routing_key, pattern, queue):
            file = self.control_folder / f"{exchange}.exchange"
            self.control_folder.mkdir(exist_ok=True)
            queue_val = exchange_queue_t(routing_key or "", pattern or "",
                                         queue or "")
            try:
                if file.exists():
                    f_obj = file.open("rb+", buffering=0)
                    lock(f_obj, LOCK_EX)
                    exchange_table = loads(bytes_to_str(f_obj.read()))
                    queues = [exchange_queue_t(*q) for q in exchange_table]
                    if queue_val not in queues:
                        queues.insert(0, queue_val)
                        f_obj.seek(0)
                        f_obj.write(str_to_bytes(dumps(queues)))
                else:
                    f_obj = file.open("wb", buffering=0)
                    lock(f_obj, LOCK_EX)
                    queues = [queue_val]
                    f_obj.write(str_to_bytes(dumps(queues)))
            finally:
                unlock(f_obj)
                f_obj.close()

        def _put_fanout(self, exchange, payload, routing_key, **kwargs):
            for q in self.get_table(exchange):
                self._put(q.queue, payload, **kwargs)

        @property
        def control_folder(self):
            return Path(self.transport_options.get('control_folder', 'control'))

    fs.Transport.Channel = Channel


def from_typed(value):
    """Turns {"__py__": T, "v": V} markers into Python values."""
    if isinstance(value, dict):
        if set(value) == {"__py__", "v"}:
            t, v = value["__py__"], value["v"]
            return {
                "datetime": datetime.datetime.fromisoformat,
                "date": datetime.date.fromisoformat,
                "time": datetime.time.fromisoformat,
                "Decimal": decimal.Decimal,
                "UUID": uuid.UUID,
                "bytes": base64.b64decode,
                "tuple": lambda v: tuple(from_typed(x) for x in v),
            }[t](v)
        return {k: from_typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_typed(v) for v in value]
    return value


def pytypes(value):
    """The decoded body with each value as [python type name, text]."""
    if isinstance(value, dict):
        return {str(k): pytypes(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [pytypes(v) for v in value]
    name = type(value).__name__
    if isinstance(value, (bytes, bytearray)):
        return [name, base64.b64encode(bytes(value)).decode()]
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return [name, value.isoformat()]
    if isinstance(value, float):
        return [name, repr(value)]
    return [name, str(value)]


def reencode(body, content_type):
    from kombu.serialization import registry
    if content_type == "application/json":
        return kombu53_dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    if content_type in ("application/data", "text/plain") or content_type is None:
        return body if isinstance(body, bytes) else body.encode()
    name = registry.type_to_name[content_type]
    payload = registry.dumps(body, serializer=name)[2]
    return payload.encode() if isinstance(payload, str) else payload


def connect(args):
    options = getattr(args, "transport_options", None)
    if options:
        return Connection(args.url, transport_options=json.loads(options))
    return Connection(args.url)


def publish(args):
    messages = json.load(sys.stdin)
    with connect(args) as conn:
        for spec in args.exchange or []:
            name, type_ = spec.rsplit(":", 1)
            Exchange(name, type=type_)(conn.default_channel).declare()
        for spec in args.declare or []:
            queue, name, type_, key = spec.split(":", 3)
            Queue(queue, Exchange(name, type=type_), routing_key=key)(conn.default_channel).declare()
        producer = Producer(conn)
        for m in messages:
            kwargs = {k: m[k] for k in PUBLISH_KEYS if k in m}
            body = from_typed(m["body"]) if getattr(args, "typed", False) else m["body"]
            producer.publish(body, exchange=m.get("exchange", ""),
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


def describe(body, message):
    """A received message as the Go tests read it."""
    return {
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
    }


def consume(args):
    out = []
    held = []

    def on_message(body, message):
        out.append(describe(body, message))
        if args.typed:
            out[-1]["pytypes"] = pytypes(body)
            out[-1]["reencoded"] = base64.b64encode(reencode(body, message.content_type)).decode()
        if args.hold:
            held.append(message)
        elif args.requeue:
            message.requeue()
        else:
            message.ack()

    with connect(args) as conn:
        if args.bind:
            bindings = []
            for spec in args.bind:
                name, type_, key = spec.split(":", 2)
                bindings.append(binding(Exchange(name, type=type_), routing_key=key))
            queue = Queue(args.queue, bindings=bindings)
        else:
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
            if held:
                time.sleep(args.hold)
                for message in held:
                    message.ack()
    print(json.dumps(out))
    if len(out) < args.count:
        sys.exit(f"got {len(out)} of {args.count} messages from {args.queue} before the timeout")


def declare(args):
    topology = json.load(sys.stdin)
    n = 0
    with connect(args) as conn:
        channel = conn.default_channel
        for ex in topology.get("exchanges", []):
            Exchange(ex["name"], type=ex.get("type", "direct"))(channel).declare()
            n += 1
        for q in topology.get("queues", []):
            bindings = [binding(Exchange(b["exchange"], type=b.get("type", "direct")),
                                routing_key=b.get("routing_key", ""))
                        for b in q.get("bindings", [])]
            Queue(q["name"], bindings=bindings)(channel).declare()
            n += 1
    print(json.dumps({"declared": n}))


def rebind(args):
    """Moves a binding: binds queue "add" to the exchange with the routing
    key, then removes queue "remove"'s binding, and prints when each
    returned (epoch seconds)."""
    spec = json.load(sys.stdin)
    ex = Exchange(spec["exchange"], type=spec.get("type", "direct"))
    with connect(args) as conn:
        channel = conn.default_channel
        Queue(spec["add"], exchange=ex, routing_key=spec["routing_key"])(channel).declare()
        bound = time.time()
        # Kombu 5.2's queue_unbind edits a local copy of the table and
        # leaves Redis alone, so the member is removed as Kombu's layout
        # writes it, through Kombu's own (prefixing) client.
        channel.client.srem(channel.keyprefix_queue % (spec["exchange"],),
                            channel.sep.join([spec["routing_key"], "", spec["remove"]]))
        unbound = time.time()
    print(json.dumps({"bound": bound, "unbound": unbound}))


def simple_queue(conn, args):
    return conn.SimpleBuffer(args.name) if args.buffer else conn.SimpleQueue(args.name)


def simple_put(args):
    bodies = json.load(sys.stdin)
    with connect(args) as conn:
        with simple_queue(conn, args) as q:
            for body in bodies:
                q.put(body)
    print(json.dumps({"put": len(bodies)}))


def simple_get(args):
    out = []
    with connect(args) as conn:
        with simple_queue(conn, args) as q:
            deadline = time.monotonic() + args.timeout
            while len(out) < args.count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    message = q.get(timeout=left)
                except q.Empty:
                    break
                out.append(describe(message.decode(), message))
                message.ack()
    print(json.dumps(out))
    if len(out) < args.count:
        sys.exit(f"got {len(out)} of {args.count} messages from {args.name} before the timeout")


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("publish")
    p.add_argument("url")
    p.add_argument("--transport-options")
    p.add_argument("--exchange", action="append")
    p.add_argument("--kombu53-json", action="store_true")
    p.add_argument("--typed", action="store_true")
    p.add_argument("--declare", action="append")
    p.add_argument("--kombu53-filesystem", action="store_true")
    p.set_defaults(fn=publish)
    c = sub.add_parser("consume")
    c.add_argument("url")
    c.add_argument("queue")
    c.add_argument("count", type=int)
    c.add_argument("--accept", default="json")
    c.add_argument("--timeout", type=float, default=10.0)
    c.add_argument("--requeue", action="store_true")
    c.add_argument("--transport-options")
    c.add_argument("--bind", action="append")
    c.add_argument("--hold", type=float, default=0)
    c.add_argument("--kombu53-json", action="store_true")
    c.add_argument("--typed", action="store_true")
    c.add_argument("--kombu53-filesystem", action="store_true")
    c.set_defaults(fn=consume)
    d = sub.add_parser("declare")
    d.add_argument("url")
    d.add_argument("--transport-options")
    d.add_argument("--kombu53-filesystem", action="store_true")
    d.set_defaults(fn=declare)
    rb = sub.add_parser("rebind")
    rb.add_argument("url")
    rb.add_argument("--transport-options")
    rb.set_defaults(fn=rebind)
    sp = sub.add_parser("simple-put")
    sp.add_argument("url")
    sp.add_argument("name")
    sp.add_argument("--buffer", action="store_true")
    sp.add_argument("--transport-options")
    sp.set_defaults(fn=simple_put)
    sg = sub.add_parser("simple-get")
    sg.add_argument("url")
    sg.add_argument("name")
    sg.add_argument("count", type=int)
    sg.add_argument("--buffer", action="store_true")
    sg.add_argument("--timeout", type=float, default=10.0)
    sg.add_argument("--transport-options")
    sg.set_defaults(fn=simple_get)
    args = parser.parse_args()
    if getattr(args, "kombu53_json", False):
        install_kombu53_json()
    if getattr(args, "kombu53_filesystem", False):
        install_kombu53_filesystem()
    args.fn(args)


if __name__ == "__main__":
    main()
