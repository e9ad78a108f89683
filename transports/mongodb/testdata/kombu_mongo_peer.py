"""Python Kombu's MongoDB transport for the interop tests of transports/mongodb.

usage: kombu_mongo_peer.py publish URL QUEUE  < JSON list of {"body": ..., "headers": {...}}
       kombu_mongo_peer.py consume URL QUEUE COUNT  > JSON list of messages

URL is a mongodb:// URL naming the server and the database.
"""
import json
import sys

from kombu import Connection


def connect(url):
    return Connection(url, transport_options={"polling_interval": 0.05})


def main():
    cmd = sys.argv[1]
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
