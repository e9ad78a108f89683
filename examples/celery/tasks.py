"""Python side of examples/celery (Debian python3-celery 5.2).

  python3 -m celery -A tasks worker -Q kombu-example-celery --pool=solo   # runs add for Go
  python3 tasks.py greet World                                           # calls Go's greet

CELERY_BROKER and CELERY_BACKEND (default: Redis on localhost) and CELERY_QUEUE
(default kombu-example-celery) configure both.
"""
import os
import sys

from celery import Celery

queue = os.environ.get("CELERY_QUEUE", "kombu-example-celery")
app = Celery("tasks",
             broker=os.environ.get("CELERY_BROKER", "redis://127.0.0.1:6379/0"),
             backend=os.environ.get("CELERY_BACKEND", "redis://127.0.0.1:6379/0"))
app.conf.update(task_default_queue=queue, task_default_exchange=queue, task_default_routing_key=queue,
                worker_hijack_root_logger=False)


@app.task(name="examples.tasks.add")
def add(x, y):
    return x + y


if __name__ == "__main__" and sys.argv[1:2] == ["greet"]:
    result = app.send_task("examples.tasks.greet", kwargs={"name": sys.argv[2]}, queue=queue + "-go")
    print(result.get(timeout=30))
