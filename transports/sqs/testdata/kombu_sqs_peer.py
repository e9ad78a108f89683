"""Python Kombu's SQS transport for the interop tests of transports/sqs.

usage: kombu_sqs_peer.py publish URL QUEUE  < JSON list of {"body": ..., "headers": {...}, "properties": {...}}
       kombu_sqs_peer.py consume URL QUEUE COUNT  > JSON list of messages
       kombu_sqs_peer.py entity NAME...  > JSON list of Kombu's SQS names for the NAMEs

URL is an sqs:// URL with the emulator's host and port; the transport
options come from the environment variable KOMBU_SQS_OPTIONS (JSON).
"""
import json
import os
import sys

from kombu import Connection
from kombu.transport.SQS import Channel, CHARS_REPLACE_TABLE


def connect(url):
    opts = json.loads(os.environ.get("KOMBU_SQS_OPTIONS", "{}"))
    return Connection(url, transport_options=opts)


def main():
    cmd = sys.argv[1]
    if cmd == "entity":
        json.dump([Channel.entity_name(None, n, CHARS_REPLACE_TABLE) for n in sys.argv[2:]], sys.stdout)
        return
    url, queue = sys.argv[2], sys.argv[3]
    with connect(url) as conn:
        q = conn.SimpleQueue(queue, serializer="json")
        if cmd == "publish":
            for m in json.load(sys.stdin):
                # properties (MessageGroupId, MessageDeduplicationId) go where
                # Kombu's _put reads them: the message's properties.
                q.put(m["body"], headers=m.get("headers") or {}, **(m.get("properties") or {}))
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
