"""Python Celery's side of bench/'s Celery rows (Debian python3-celery 5.2).

  python3 celery_bench.py URL QUEUE N send OUT    time N send_task calls of an empty task
  python3 celery_bench.py URL QUEUE N send-confirmed OUT
                                                  the same with confirm_publish=True
  python3 celery_bench.py URL QUEUE N work OUT    send N (untimed), then time a solo-pool
                                                  worker running them (first to last task)

It writes {"rate": msgs/s, "cpu_us_per_msg": CPU µs per message} to OUT.
No result backend: both sides measure the broker work alone.
"""
import json
import os
import sys
import time

from celery import Celery

url, queue, n, mode, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
app = Celery("bench", broker=url)
app.conf.update(task_default_queue=queue, task_default_exchange=queue, task_default_routing_key=queue,
                task_ignore_result=True, worker_hijack_root_logger=False)
if mode == "send-confirmed":
    # py-amqp waits for the broker's publisher confirm on each publish.
    app.conf.broker_transport_options = {"confirm_publish": True}
state = {"done": 0}


def report(rate, cpu):
    with open(out, "w") as f:
        json.dump({"rate": rate, "cpu_us_per_msg": cpu}, f)


@app.task(name="bench.noop")
def noop():
    state["done"] += 1
    if state["done"] == 1:
        state["t0"], state["c0"] = time.perf_counter(), time.process_time()
    elif state["done"] == n:
        el, cpu = time.perf_counter() - state["t0"], time.process_time() - state["c0"]
        report((n - 1) / el, cpu * 1e6 / (n - 1))
        os._exit(0)


def send(count):
    with app.producer_or_acquire() as p:
        for _ in range(count):
            app.send_task("bench.noop", producer=p)


if mode in ("send", "send-confirmed"):
    send(10)  # connect and declare before the clock starts
    t0, c0 = time.perf_counter(), time.process_time()
    send(n)
    el, cpu = time.perf_counter() - t0, time.process_time() - c0
    report(n / el, cpu * 1e6 / n)
elif mode == "work":
    send(n)
    app.worker_main(["worker", "-Q", queue, "--pool=solo", "-c", "1", "--without-heartbeat",
                     "--without-mingle", "--without-gossip", "-l", "WARNING", "-n", queue + "@%h"])
else:
    sys.exit("unknown mode " + mode)
