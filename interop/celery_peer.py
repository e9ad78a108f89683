"""Python Celery side of kombu-go's Celery interop tests (Debian python3-celery 5.2).

Configured by the environment: CELERY_BROKER, CELERY_BACKEND (a redis:// URL or
rpc://) and CELERY_QUEUE (the test's own queue, also its exchange and routing key).

  python3 celery_peer.py worker     run a worker on CELERY_QUEUE (solo pool)
  python3 celery_peer.py call       read [{"task", "args", "kwargs", "countdown",
                                    "expires", "delay"}] on stdin, send them all, wait
                                    for each and print [{"id", "status", "result",
                                    "exc_type", "exc_message", "retries"}]
"""
import json
import os
import sys

from celery import Celery

queue = os.environ.get("CELERY_QUEUE", "celery")
app = Celery("interop", broker=os.environ["CELERY_BROKER"], backend=os.environ.get("CELERY_BACKEND"))
app.conf.update(
    task_default_queue=queue,
    task_default_exchange=queue,
    task_default_routing_key=queue,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name="interop.add")
def add(x, y):
    return x + y


@app.task(name="interop.fail")
def fail(message):
    raise ValueError(message)


@app.task(name="interop.flaky", bind=True, max_retries=5)
def flaky(self, times):
    if self.request.retries < times:
        raise self.retry(countdown=1)
    return self.request.retries


@app.task(name="interop.echo")
def echo(**kwargs):
    return kwargs


@app.task(name="interop.nothing")
def nothing():
    return None


def call():
    calls = json.load(sys.stdin)
    sent = []
    for c in calls:
        opts = {}
        for k in ("countdown", "expires"):
            if c.get(k) is not None:
                opts[k] = c[k]
        if c.get("delay"):
            r = app.tasks[c["task"]].delay(*c.get("args", []), **c.get("kwargs", {})) if c["task"] in app.tasks \
                else app.send_task(c["task"], c.get("args", []), c.get("kwargs", {}))
        else:
            r = app.send_task(c["task"], args=c.get("args", []), kwargs=c.get("kwargs", {}), **opts)
        sent.append(r)
    out = []
    for r in sent:
        row = {"id": r.id}
        try:
            row["result"] = r.get(timeout=float(os.environ.get("CELERY_TIMEOUT", "30")), propagate=True)
            row["status"] = r.status
        except Exception as e:  # the task's own exception, rebuilt by Celery
            row["status"] = r.status
            row["exc_type"] = type(e).__name__
            row["exc_message"] = str(e)
        out.append(row)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    if sys.argv[1] == "worker":
        app.worker_main(["worker", "-Q", queue, "--pool=solo", "-c", "1", "--without-heartbeat",
                         "--without-mingle", "--without-gossip", "-l", "INFO", "-n", "interop-" + queue + "@%h"])
    elif sys.argv[1] == "call":
        call()
    else:
        sys.exit("unknown mode " + sys.argv[1])
