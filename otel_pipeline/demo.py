"""The demo: an order pipeline, fetch -> process -> write, that exercises every hook.

Each cycle is one run of the pipeline ``orders-etl``:

* fetch: a batch from the flaky "orders API" (an action with a timeout, an HTTP client call,
  behind a circuit breaker), plus webhook deliveries served by an in-process WSGI app;
* process: each order is an event; duplicates are dropped (dedup), customers are looked up in a
  cache, and a notification job is put on a queue;
* write: orders are written through a connection pool, notification jobs are sent (an action
  that fails or times out now and then; failed jobs are retried, then dead-lettered), and the
  listener's checkpoint is saved.

Process resources are monitored all along. Randomness is seeded: the same seed makes the same
decisions. It sleeps far more than it computes, so it is cheap on CPU.

>>> from otel_pipeline.demo import run_demo
>>> report = run_demo(duration=0.3, port=0, quiet=True)
>>> report["pipelines"]["orders-etl"]["started"] >= 1
True
"""

from __future__ import annotations

import asyncio
import queue
import random
import signal
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import otel_pipeline as op

__all__ = ["DeliveryError", "DependencyError", "Order", "run_demo"]

PIPELINE = "orders-etl"
API = "orders-api"
API_URL = "https://orders.internal/v1/orders?batch=20"
CUSTOMERS_CACHE_SIZE = 40
MAX_ATTEMPTS = 3
#: Seconds of simulated work per order in the process stage (half of it again to write it).
ORDER_WORK = 0.002


class DependencyError(ConnectionError):
    """The orders API did not answer."""


class DeliveryError(Exception):
    """A notification could not be delivered."""


class BreakerOpenError(DependencyError):
    """The circuit breaker refused the call."""


@dataclass
class Order:
    """One order event."""

    id: str
    type: str
    customer: int
    valid: bool


@dataclass
class Job:
    """One notification job on the queue."""

    order_id: str
    enqueued_at: float
    poison: bool = False
    attempts: int = 0


class Breaker:
    """A small consecutive-failure circuit breaker reporting through ``op.circuit_breaker``."""

    def __init__(self, name: str, threshold: int = 3, cooldown: int = 2) -> None:
        self.hook = op.circuit_breaker(name)
        self.threshold = threshold
        self.cooldown = cooldown
        self.failures = 0
        self.state = "closed"
        self.rejections_left = 0
        self.hook.record_state("closed")

    @contextmanager
    def call(self) -> Iterator[None]:
        """Run the block through the breaker; raise :class:`BreakerOpenError` while open."""
        if self.state == "open":
            if self.rejections_left > 0:
                self.rejections_left -= 1
                self.hook.rejected()
                raise BreakerOpenError("circuit breaker open")
            self._move("half_open")
        try:
            yield
        except Exception:
            self.hook.failure()
            self.failures += 1
            if self.state == "half_open" or self.failures >= self.threshold:
                self._move("open")
                self.rejections_left = self.cooldown
            raise
        self.hook.success()
        self.failures = 0
        if self.state != "closed":
            self._move("closed")

    def _move(self, state: str) -> None:
        self.state = state
        self.hook.record_state(state)


class World:
    """The simulated outside world and the pipeline's state, driven by one seeded generator."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.breaker = Breaker(API)
        self.customers: OrderedDict[int, str] = OrderedDict()
        self.seen: deque[str] = deque(maxlen=500)
        self.jobs: deque[Job] = deque()
        self.dead_letters: list[Job] = []
        #: Webhook deliveries wait here for the next fetch (a standard-library queue, instrumented).
        self.inbox: queue.Queue[Order] = queue.Queue(maxsize=1000)
        op.instrument_queue(self.inbox, "webhook-inbox")
        self.next_id = 0
        self.offset = 0
        self.cycles = 0
        self.jobs_made = 0
        #: The API is down for cycles [start, end): the first outage is scripted, later ones random.
        self.outage = (6, 9)
        self.webhooks = op.WSGIMiddleware(self._webhook_app, route=lambda environ: "/webhooks/orders")
        notifications = op.queue("notifications", capacity=500)
        notifications.observe_depth(lambda: len(self.jobs))
        notifications.observe_dead_letter_depth(lambda: len(self.dead_letters))
        self.api_health = op.health_target("orders-api")

    def close(self) -> None:
        """Detach what the hooks read from this world (hooks outlive it: they are cached by name)."""
        notifications = op.queue("notifications")
        notifications.observe_depth(None)
        notifications.observe_dead_letter_depth(None)
        notifications.set_capacity(None)
        op.uninstrument_queue(self.inbox)

    # -- the outside world ----------------------------------------------------------------------

    def _order(self) -> Order:
        rng = self.rng
        if self.seen and rng.random() < 0.06:  # the source sends some orders twice
            order_id = rng.choice(list(self.seen)[-50:])
        else:
            self.next_id += 1
            order_id = f"o-{self.next_id}"
        kind = rng.choice(("order.created", "order.created", "order.paid", "order.shipped"))
        return Order(order_id, kind, rng.randrange(60), rng.random() > 0.03)

    def next_cycle(self) -> None:
        """Advance the clock of the world by one cycle; an outage of 3-6 cycles starts now and then."""
        self.cycles += 1
        if self.cycles >= self.outage[1] and self.rng.random() < 0.03:
            self.outage = (self.cycles, self.cycles + self.rng.randint(3, 6))

    def call_api(self, size: int) -> Iterator[Order]:
        """The orders API: 10-40 ms; fails 5% of the time (always during an outage), 4% too late.

        The orders stream in: half of the latency before the first one, the rest spread over them.
        """
        rng = self.rng
        roll = rng.random()
        if roll < 0.05 or self.outage[0] <= self.cycles < self.outage[1]:
            time.sleep(0.005)
            raise DependencyError("orders API: 503 Service Unavailable")
        latency = 0.09 if roll < 0.09 else rng.uniform(0.01, 0.04)
        time.sleep(latency / 2)
        for _ in range(size):
            time.sleep(latency / 2 / size)
            yield self._order()

    def _webhook_app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if self.rng.random() < 0.05:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [b"try again"]
        self.inbox.put(self._order())
        start_response("202 Accepted", [("Content-Type", "text/plain")])
        return [b"accepted"]

    def deliver_webhooks(self, count: int) -> None:
        """``count`` webhook POSTs served by the instrumented WSGI app (in process)."""
        for _ in range(count):
            environ = {
                "REQUEST_METHOD": "POST",
                "PATH_INFO": "/webhooks/orders",
                "SERVER_PROTOCOL": "HTTP/1.1",
                "wsgi.url_scheme": "http",
                "SERVER_NAME": "127.0.0.1",
                "SERVER_PORT": "8080",
            }
            body = self.webhooks(environ, lambda status, headers, exc_info=None: None)
            close = getattr(body, "close", None)
            list(body)
            if close is not None:
                close()

    def send_notification(self, job: Job) -> None:
        """Deliver one notification: 1 ms; fails 6% (always for a bad address), answers too late 3%."""
        roll = self.rng.random()
        if job.poison or roll < 0.06:
            raise DeliveryError(f"mail server refused notification for {job.order_id}")
        time.sleep(0.035 if roll < 0.09 else 0.001)


# -- the pipeline ---------------------------------------------------------------------------------


def fetch(world: World, progress: Callable[[int], None]) -> list[Order]:
    """A batch from the orders API (through the breaker, as an action and an HTTP call), plus webhooks.

    ``progress(n)`` is called as orders arrive (the webhooks' once the API call succeeded).
    """
    world.deliver_webhooks(world.rng.randrange(1, 5))
    batch = []
    while not world.inbox.empty():
        batch.append(world.inbox.get_nowait())
    webhooks = len(batch)
    with (
        world.breaker.call(),
        op.actions(API).track("fetch_batch", timeout=0.06),
        op.http_client(API).request("GET", API_URL) as request,
    ):
        try:
            for order in world.call_api(20):
                batch.append(order)
                progress(1)
        except DependencyError:
            request.status_code = 503
            world.api_health.failure()
            raise
        request.status_code = 200
        world.api_health.success()
    progress(webhooks)
    return batch


def process(world: World, batch: list[Order], progress: Callable[[int], None]) -> int:
    """Each order: dedup, an event (customer lookup, notification job); returns orders kept.

    ``progress(1)`` is called after each order (kept or not).
    """
    kept = 0
    dedup, events, customers, notifications = (
        op.dedup("orders"),
        op.events("orders"),
        op.cache("customers"),
        op.queue("notifications"),
    )
    for order in batch:
        time.sleep(ORDER_WORK)
        progress(1)
        if dedup.check(duplicate=order.id in world.seen):
            continue
        world.seen.append(order.id)
        try:
            with events.process(order.type, event_id=order.id):
                if order.customer in world.customers:
                    customers.hit()
                    world.customers.move_to_end(order.customer)
                else:
                    customers.miss()
                    world.customers[order.customer] = f"customer-{order.customer}"
                    if len(world.customers) > CUSTOMERS_CACHE_SIZE:
                        world.customers.popitem(last=False)
                        customers.evicted()
                if not order.valid:
                    raise ValueError(f"order {order.id} has no line items")
                world.jobs_made += 1
                # every 25th notification goes to an address that never works: it ends dead-lettered
                world.jobs.append(Job(order.id, time.time(), poison=world.jobs_made % 25 == 7))
                notifications.enqueued(job_type="send_email")
                kept += 1
        except ValueError:
            pass  # recorded as a failed event; the pipeline goes on
    entries = len(world.customers)
    customers.set_size(entries=entries, bytes=entries * 312, max_entries=CUSTOMERS_CACHE_SIZE)
    return kept


def write(world: World, orders: int, progress: Callable[[int], None]) -> int:
    """Write the orders through the pool, send the notifications, save the checkpoint.

    ``progress(1)`` is called after each order written and each notification sent; returns their number.
    """
    pool = op.connection_pool("postgres", max_size=5)
    try:
        with pool.waiting():
            time.sleep(world.rng.uniform(0.0, 0.003))
            if world.cycles == 2 or world.rng.random() < 0.03:
                raise TimeoutError("no free connection within 3 ms")
    except TimeoutError:
        with pool.waiting():  # the second attempt gets one
            time.sleep(0.003)
    with pool.connection():
        time.sleep(0.002)
        for _ in range(orders):
            time.sleep(ORDER_WORK / 2)
            progress(1)
    notifications, notifier = op.queue("notifications"), op.actions("notifier")
    sent = 0
    with notifications.worker():
        for _ in range(len(world.jobs)):
            job = world.jobs.popleft()
            job.attempts += 1
            try:
                with (
                    notifications.processing(
                        enqueued_at=job.enqueued_at, job_id=job.order_id, job_type="send_email"
                    ),
                    notifier.track("send_email", timeout=0.03),
                ):
                    world.send_notification(job)
                sent += 1
                progress(1)
            except DeliveryError:
                if job.attempts < MAX_ATTEMPTS:
                    notifications.retried()
                    world.jobs.append(job)
                else:
                    notifications.dead_lettered(reason="max_attempts", job_type="send_email")
                    world.dead_letters.append(job)
    if world.cycles % 5 == 0 and world.dead_letters:
        # an operator fixes the addresses and replays the dead-letter queue
        for job in world.dead_letters:
            world.jobs.append(Job(job.order_id, time.time()))
        notifications.replayed(len(world.dead_letters))
        world.dead_letters.clear()
    with op.checkpoint("orders-listener").save():
        world.offset += orders
    return orders + sent


def cycle(world: World) -> None:
    """One run of the pipeline; a failed fetch fails the run (recorded), and the next run goes on."""
    world.next_cycle()
    if world.cycles % 8 == 1:
        with op.refresh_job("customer-directory", interval=2.0).running():
            time.sleep(0.005)  # reload the customer directory
    try:
        with op.pipeline(PIPELINE) as run:
            # Each stage counts its items as it goes, so that the live view moves.
            with run.stage("fetch") as stage:
                batch = fetch(world, stage.processed)
            with run.stage("process") as stage:
                kept = process(world, batch, stage.processed)
            with run.stage("write") as stage:
                write(world, kept, stage.processed)
    except DependencyError:
        pass


# -- running it -----------------------------------------------------------------------------------


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop`` (main thread only); the previous handlers come back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handle(signum: int, frame: Any) -> None:
        stop.set()

    for sig in previous:
        signal.signal(sig, handle)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _banner(pipeline: op.Pipeline, until: str) -> list[str]:
    """Where to look while the demo runs (the endpoints of the embedded server, and where pushes go)."""
    config = pipeline.config
    pushed = [f"sent over OTLP to {config.resolved_otlp_endpoint}"] if config.exports("otlp") else []
    pushed += [f"pushed to the Pushgateway {config.pushgateway_url}"] if config.exports("pushgateway") else []
    pushed += [f"remote-written to {config.remote_write_url}"] if config.exports("remote_write") else []
    pushed += ["printed here with the spans (console exporter)"] if config.exports("console") else []
    every = f" every {config.export_interval:g} s" if pushed else ""
    if pipeline.server is not None:
        base = pipeline.server.url
        lines = [
            f"otel-pipeline demo: live page at {base}/",  # first: what a person opens
            f"otel-pipeline demo: metrics at {base}/metrics, running {until}",
            f"  also {base}/health (health checks), {base}/stats (current values as JSON), "
            f"{base}/trends (rates)",
        ]
        if pushed:
            lines.append(f"  and metrics {', '.join(pushed)}{every}")
        return lines
    if not pushed:
        return [
            f"otel-pipeline demo: metrics kept in the process (exporter {config.exporter!r}), "
            f"the run summary at the end, running {until}"
        ]
    return [f"otel-pipeline demo: metrics {', '.join(pushed)}{every}, running {until}"]


@contextmanager
def _monitored_event_loop() -> Iterator[None]:
    """An asyncio loop in a thread of its own, its lag monitored (``asyncio.event_loop.lag``)."""
    loop = asyncio.new_event_loop()
    op.monitor_event_loop(loop, interval=0.25)
    thread = threading.Thread(target=loop.run_forever, name="demo-event-loop", daemon=True)
    thread.start()
    try:
        yield
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5.0)
        loop.close()


def run_demo(
    *,
    duration: float | None = None,
    port: int = 9464,
    host: str = "127.0.0.1",
    exporter: str = "prometheus",
    otlp_endpoint: str | None = None,
    pushgateway_url: str | None = None,
    remote_write_url: str | None = None,
    seed: int = 7,
    pause: float = 0.05,
    summary_path: str | Path | None = None,
    stop: threading.Event | None = None,
    console: Any = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Run the demo until ``duration`` seconds have passed (None: until SIGINT/SIGTERM or ``stop``).

    Serves ``/metrics`` on ``host:port`` with the Prometheus exporter (or pushes: OTLP, Pushgateway,
    remote write; ``exporter`` takes several joined by commas, as ``configure()`` does), prints
    the run summary at the end (unless ``quiet``), writes it to ``summary_path`` if given, shuts
    otel_pipeline down and returns the summary.
    """
    from rich.console import Console

    out = console if console is not None else Console()
    stop = stop or threading.Event()
    pipeline = op.configure(
        service_name="otel-pipeline-demo",
        exporter=exporter,
        prometheus_host=host,
        prometheus_port=port,
        otlp_endpoint=otlp_endpoint,
        pushgateway_url=pushgateway_url,
        remote_write_url=remote_write_url,
        export_interval=None if exporter in ("prometheus", "none") else 5.0,
    )
    with ExitStack() as cleanup:
        cleanup.callback(op.shutdown)
        if not quiet:
            until = f"for {duration:g} s" if duration is not None else "until Ctrl-C"
            for line in _banner(pipeline, until):
                out.print(line, highlight=False, soft_wrap=True)
        op.monitor_resources(interval=1.0)
        cleanup.enter_context(_monitored_event_loop())
        world = World(seed)
        cleanup.callback(world.close)
        op.checkpoint("orders-listener").recovered()
        op.register_health_check(
            "notifications-backlog",
            lambda: "degraded" if len(world.jobs) > 200 else "healthy",
            critical=False,
        )
        cleanup.callback(op.unregister_health_check, "notifications-backlog")
        op.register_collector(
            "demo", lambda: {"cycles": world.cycles, "offset": world.offset, "backlog": len(world.jobs)}
        )
        cleanup.callback(op.unregister_collector, "demo")
        deadline = None if duration is None else time.monotonic() + duration
        with _stop_on_signals(stop), op.live_progress(console=out, enabled=None if not quiet else False):
            while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                cycle(world)
                wait = pause if deadline is None else max(0.0, min(pause, deadline - time.monotonic()))
                stop.wait(wait)
        report = op.summary()
        if summary_path is not None:
            op.write_summary(summary_path)
        if not quiet:
            op.print_summary(console=out)
        return report
