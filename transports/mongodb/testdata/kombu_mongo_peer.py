"""Python Kombu's MongoDB transport for the interop tests of transports/mongodb.

usage: kombu_mongo_peer.py publish URL QUEUE  < JSON list of {"body": ..., "headers": {...}}
       kombu_mongo_peer.py consume URL QUEUE COUNT  > JSON list of messages
       kombu_mongo_peer.py fanout-publish URL EXCHANGE  < JSON list as for publish
       kombu_mongo_peer.py fanout-consume URL EXCHANGE QUEUE COUNT  > "ready" line, then JSON list

fanout-consume binds QUEUE to the fanout EXCHANGE (Kombu then reads the
capped collection messages.broadcast with a tailable cursor), prints a line
"ready" once bound, waits for a line on stdin, and prints the COUNT messages
it then receives. It waits because on FerretDB a tailable cursor that has
reached the end is dead, and Kombu 5.2 never opens another: its fanout
consumer sees only what was broadcast between its binding and its first
read (Python to Python alike), where MongoDB keeps the cursor alive.

URL is a mongodb:// URL naming the server and the database.
"""
import json
import socket
import sys

from kombu import Connection, Consumer, Exchange, Producer, Queue


def connect(url):
    return Connection(url, transport_options={"polling_interval": 0.05})


def fanout(cmd, url, exchange_name):
    exchange = Exchange(exchange_name, "fanout", durable=False)
    with connect(url) as conn:
        if cmd == "fanout-publish":
            producer = Producer(conn, exchange=exchange, serializer="json")
            for m in json.load(sys.stdin):
                producer.publish(m["body"], headers=m.get("headers") or {})
            return
        out = []

        def on_message(body, message):
            out.append({"payload": body, "content_type": message.content_type, "headers": message.headers})
            message.ack()

        queue = Queue(sys.argv[4], exchange)
        with Consumer(conn, queues=[queue], callbacks=[on_message], accept=["json"]):
            print("ready", flush=True)
            sys.stdin.readline()
            while len(out) < int(sys.argv[5]):
                try:
                    conn.drain_events(timeout=20)
                except socket.timeout:
                    break
        print(json.dumps(out), flush=True)


def main():
    cmd = sys.argv[1]
    if cmd.startswith("fanout-"):
        fanout(cmd, sys.argv[2], sys.argv[3])
        return
    url, queue = sys.argv[2], sys.argv[3]
    with connect(url) as conn:
        q = conn.SimpleQueue(queue, serializer="json")
        if cmd == "publish":
            for m in json.load(sys.stdin):
                q.put(m["body"], headers=m.get("headers") or {})
        elif cmd == "consume":
            out = []
            for _ in range(int(sys.argv[4])):
                msg = q.get(block=True, timeout=20)
                out.append({
                    "payload": msg.payload,
                    "content_type": msg.content_type,
                    "headers": msg.headers,
                    "redelivered": bool(msg.delivery_info.get("redelivered")),
                })
                msg.ack()
            json.dump(out, sys.stdout)
        q.close()


main()
