"""The live status page in headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven
by selenium), against a stub host on loopback that serves the page and a changing ``/v1/status``
made by the real :class:`StatusBuilder`: the page loads, shows a worker that connects, and its
rates move when the counters move, with no script errors under the page's own CSP; and once
against the real thing: ``autogen-http-host`` serving ``/ui`` while real workers connect and call.

Chromium is installed by ``.ci/run`` (``apt-get install -y chromium chromium-driver``); where it is
missing the tests skip, except under CI, where they fail.

``UI_SCREENSHOT=docs/ui.png pytest tests/ui`` also renders the screenshot in the docs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from io_backends.host._ui import page, page_headers
from io_backends.sansio._status import HostCounters, HostSnapshot, StatusBuilder, WorkerSnapshot, encode_status
from sansio_runtime import TypePrefixSubscriptionSpec, TypeSubscriptionSpec

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
INSTALL = "apt-get install -y chromium chromium-driver"
TOKEN = "s3cret"
NO_VALUE = "\u2013"  # what the page shows for a rate it does not know yet (an en dash)


def _need_chromium() -> None:
    if CHROMIUM and CHROMEDRIVER:
        return
    missing = "chromium" if not CHROMIUM else "chromedriver (Debian's chromium-driver)"
    if os.environ.get("CI") == "true" and shutil.which("apt-get"):
        pytest.fail(f"{missing} is not installed, and CI can install it: add `{INSTALL}` to .ci/run")
    pytest.skip(f"{missing} is not installed here; `{INSTALL}` (Debian, as root) runs the browser tests")


# ------------------------------------------------------------------------- the stub host


@dataclass
class Worker:
    id: int
    name: str | None
    types: tuple[str, ...]
    topics: tuple[str, ...] = ()
    connected_at: float = field(default_factory=time.time)
    share: float = 1.0  # of the worker rate given to FakeHost.flow
    rate: float = 0.0  # messages per second each way while flowing
    messages: float = 0.0
    last: float = field(default_factory=time.monotonic)

    def advance(self, now: float) -> None:
        self.messages += self.rate * (now - self.last)
        self.last = now


class FakeHost:
    """What a host would feed StatusBuilder, with counters that grow at rates the test sets."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.builder = StatusBuilder(started_at=time.monotonic() - 3725.0, window=2.0)
        self.workers: dict[int, Worker] = {}
        self.calls = self.events = 0.0
        self.call_rate = self.event_rate = 0.0
        self.last = time.monotonic()
        self.failing_with: int | None = None

    def connect(self, worker: Worker) -> None:
        with self.lock:
            self.workers[worker.id] = worker

    def flow(self, calls_per_second: float, events_per_second: float = 0.0, worker_rate: float | None = None) -> None:
        with self.lock:
            self._advance(time.monotonic())
            self.call_rate, self.event_rate = calls_per_second, events_per_second
            for w in self.workers.values():
                w.rate = (calls_per_second if worker_rate is None else worker_rate) * w.share

    def _advance(self, now: float) -> None:
        self.calls += self.call_rate * (now - self.last)
        self.events += self.event_rate * (now - self.last)
        self.last = now
        for w in self.workers.values():
            w.advance(now)

    def status(self) -> bytes:
        with self.lock:
            now = time.monotonic()
            self._advance(now)
            workers = [
                WorkerSnapshot(
                    id=w.id,
                    name=w.name,
                    address=f"127.0.0.1:{40000 + w.id}",
                    connected_at=w.connected_at,
                    agent_types=w.types,
                    subscriptions=len(w.topics),
                    pending_calls=int(w.rate > 0),
                    messages_in=int(w.messages),
                    messages_out=int(w.messages),
                    bytes_in=int(w.messages * 180),
                    bytes_out=int(w.messages * 240),
                )
                for w in self.workers.values()
            ]
            subscriptions = [
                (
                    TypePrefixSubscriptionSpec(f"{w.id}-{topic}", topic[:-1], w.types[0])
                    if topic.endswith("*")
                    else TypeSubscriptionSpec(f"{w.id}-{topic}", topic, w.types[0]),
                    w.id,
                )
                for w in self.workers.values()
                for topic in w.topics
            ]
            counters = HostCounters(
                calls_routed=int(self.calls),
                events_published=int(self.events),
                event_deliveries=int(self.events * 2),
                messages_in=int(self.calls + self.events),
                messages_out=int(self.calls + self.events * 2),
                bytes_in=int(self.calls * 180),
                bytes_out=int(self.calls * 240),
            )
            snapshot = HostSnapshot(
                counters=counters,
                workers=workers,
                agent_types={t: w.id for w in self.workers.values() for t in w.types},
                subscriptions=subscriptions,
                subscriptions_total=len(subscriptions),
                connections=len(workers),
            )
            return encode_status(self.builder.build(snapshot, now=now, wall_clock=time.time()))


class Handler(BaseHTTPRequestHandler):
    host: FakeHost

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        for prefix in ("/secure", "/agents", ""):
            if path in (f"{prefix}/ui", f"{prefix}/v1/status") or (prefix and path == f"{prefix}/"):
                break
        else:
            return self._send(404, [(b"content-type", b"text/plain")], b"not found")
        if path.endswith("/v1/status"):
            if prefix == "/secure" and self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._send(401, [(b"www-authenticate", b"Bearer")], b'{"error":{"status":401}}')
            if self.host.failing_with is not None:
                return self._send(self.host.failing_with, [], b"{}")
            return self._send(200, [(b"content-type", b"application/json")], self.host.status())
        return self._send(200, list(page_headers()), page())

    def _send(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name.decode(), value.decode())
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@pytest.fixture
def host() -> Iterator[tuple[FakeHost, str]]:
    fake = FakeHost()
    handler = type("BoundHandler", (Handler,), {"host": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="stub-host", daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


# ---------------------------------------------------------------------------- the browser


@pytest.fixture
def browser() -> Iterator[Any]:
    _need_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="ui-test-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # type: ignore[assignment]
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1360,1100",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver: Any, condition: Any, what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = condition(driver)
        except Exception:  # an element that is being replaced: look again
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            notice = driver.execute_script("return document.getElementById('notice').textContent")
            pytest.fail(f"timed out waiting for {what} (page notice: {notice!r}; log: {driver.get_log('browser')})")
        time.sleep(0.1)


def text(driver: Any, element_id: str) -> str:
    return str(driver.execute_script(f"return document.getElementById({element_id!r}).textContent"))


def worker_row(driver: Any, name: str) -> list[str] | None:
    rows = driver.execute_script(
        "return [...document.querySelectorAll('#t-workers tr')].map(tr => [...tr.cells].map(td => td.textContent))"
    )
    return next((row for row in rows if row and row[0] == name), None)


def rate(value: str) -> float:
    return float(value.replace(",", "")) if value not in (NO_VALUE, "") else -1.0


def severe(driver: Any) -> list[dict[str, Any]]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def chart_ink(driver: Any) -> int:
    """How many pixels of the chart's plot area are drawn in the calls line's colour."""
    return int(
        driver.execute_script(
            """
            const c = document.getElementById('chart'), ctx = c.getContext('2d');
            const probe = document.createElement('canvas').getContext('2d');
            probe.fillStyle = getComputedStyle(document.documentElement).getPropertyValue('--accent').trim();
            probe.fillRect(0, 0, 1, 1);
            const [r, g, b] = probe.getImageData(0, 0, 1, 1).data;
            const d = ctx.getImageData(60, 10, c.width - 80, c.height - 40).data;
            let n = 0;
            for (let i = 0; i < d.length; i += 4)
              if (Math.abs(d[i] - r) < 40 && Math.abs(d[i + 1] - g) < 40 && Math.abs(d[i + 2] - b) < 40
                  && d[i + 3] > 200) n++;
            return n;
            """
        )
    )


# ------------------------------------------------------------------------------- the tests


def test_page_shows_a_worker_that_connects_and_its_rates_move(
    host: tuple[FakeHost, str], browser: Any, tmp_path: Path
) -> None:
    fake, base = host
    browser.get(f"{base}/agents/ui")  # mounted under a prefix: it reads /agents/v1/status
    wait_for(browser, lambda d: text(d, "state-text") == "Live", "the page to go live")
    wait_for(browser, lambda d: "No workers connected." in text(d, "t-workers"), "the empty workers table")
    assert text(browser, "c-workers") == "0" and text(browser, "endpoint") == "/agents/v1/status"

    fake.connect(Worker(7, "reverse-worker", ("reverse", "upper"), ("default", "reverse:*")))
    row = wait_for(browser, lambda d: worker_row(d, "reverse-worker"), "the worker's row")
    assert row[1] == "127.0.0.1:40007" and "reverse" in row[3] and "upper" in row[3] and row[4] == "2"
    wait_for(browser, lambda d: "reverse-worker" in text(d, "t-types"), "the agent types and their owner")
    subs = text(browser, "t-subs")
    assert "default" in subs and "reverse:*" in subs
    assert text(browser, "c-workers") == "1" and text(browser, "c-types") == "2" and text(browser, "c-subs") == "2"
    wait_for(browser, lambda d: rate(worker_row(d, "reverse-worker")[6]) == 0.0, "a rate of 0 while idle")
    idle_ink = chart_ink(browser)

    fake.flow(calls_per_second=40.0, events_per_second=10.0)
    wait_for(browser, lambda d: rate(worker_row(d, "reverse-worker")[6]) > 20, "the worker's rate to rise")
    wait_for(browser, lambda d: rate(text(d, "c-calls")) > 20, "the calls/s figure to rise")
    wait_for(browser, lambda d: chart_ink(d) > idle_ink + 50, "the chart to draw the calls")
    label = browser.find_element("id", "chart").get_attribute("aria-label")
    assert "calls/s" in label and "now 0 calls/s" not in label
    browser.save_screenshot(str(tmp_path / "ui.png"))
    assert (tmp_path / "ui.png").stat().st_size > 10_000

    fake.flow(calls_per_second=0.0)  # and back down when the calls stop
    wait_for(browser, lambda d: rate(worker_row(d, "reverse-worker")[6]) == 0.0, "the worker's rate to fall")
    assert severe(browser) == [], "script or CSP errors in the page"

    fake.failing_with = 500
    wait_for(browser, lambda d: "answered 500" in text(d, "notice"), "a notice about the failing host")
    assert "reverse-worker" in text(browser, "t-workers")  # the last figures stay
    fake.failing_with = None
    wait_for(browser, lambda d: text(d, "state-text") == "Live", "the page to recover")
    wait_for(browser, lambda d: not d.find_element("id", "notice").is_displayed(), "the notice to go")


def test_page_at_the_root_and_with_a_token(host: tuple[FakeHost, str], browser: Any) -> None:
    fake, base = host
    fake.connect(Worker(1, None, (), ()))  # an anonymous worker that only calls
    browser.get(f"{base}/ui")
    wait_for(browser, lambda d: worker_row(d, "#1"), "the anonymous worker's row")
    assert "calls only" in text(browser, "t-workers") and text(browser, "endpoint") == "/v1/status"

    browser.get(f"{base}/secure/ui")
    wait_for(browser, lambda d: "requires a token" in text(d, "notice"), "the token notice")
    browser.get("about:blank")
    browser.get(f"{base}/secure/ui#token={TOKEN}")
    wait_for(browser, lambda d: worker_row(d, "#1"), "the status read with the token")
    assert not any(e for e in severe(browser) if e["source"] != "network"), "only the refused fetch may log"


@pytest.mark.skipif(not os.environ.get("UI_SCREENSHOT"), reason="renders docs/ui.png when UI_SCREENSHOT names it")
def test_screenshot_for_the_docs(host: tuple[FakeHost, str], browser: Any) -> None:
    fake, base = host
    now = time.time()
    fake.connect(Worker(3, "orchestrator", ("orchestrator",), ("default",), connected_at=now - 3600, share=1.0))
    fake.connect(
        Worker(4, "reverse-worker", ("reverse", "upper"), ("reverse:*", "upper:*"), connected_at=now - 1800, share=0.6)
    )
    fake.connect(
        Worker(5, "writers", ("writer", "editor", "critic"), ("group_chat", "writer:*", "editor:*"),
               connected_at=now - 340, share=0.3)
    )  # fmt: skip
    fake.connect(Worker(6, None, (), (), connected_at=now - 12, share=0.1))
    browser.get(f"{base}/ui")
    for second in range(40):
        wave = 1 + 0.6 * ((second % 12) / 12)
        fake.flow(calls_per_second=180 * wave, events_per_second=45 + second, worker_rate=60 * wave)
        time.sleep(1)
    target = Path(os.environ["UI_SCREENSHOT"])
    browser.save_screenshot(str(target))
    assert severe(browser) == []
    print(json.dumps({"screenshot": str(target)}))


def test_the_page_is_one_self_contained_file() -> None:
    """No build step, no CDN, no external fonts: nothing in the page points outside its host."""
    html = page().decode()
    assert html.startswith("<!doctype html>") and html.count("<script>") == 1 and html.count("<style>") == 1
    outside = [u for u in re.findall(r"""(?:https?:)?//[^\s"'<>)]+""", html) if u != "http://www.w3.org/2000/svg"]
    assert outside == [], outside
    assert "@import" not in html and "url(" not in html and " src=" not in html
    headers = dict(page_headers())
    policy = headers[b"content-security-policy"].decode()
    assert "default-src 'none'" in policy and "'unsafe-inline'" not in policy and "connect-src 'self'" in policy
    assert headers[b"content-type"] == b"text/html; charset=utf-8"


# ------------------------------------------------------------------------- the real host


class CallingWorkers:
    """Two real workers on their own asyncio loop in a thread: one hosts ``echo``, one calls it
    while ``flowing`` is set."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.flowing = threading.Event()
        self.stopping = threading.Event()
        self.ready = threading.Event()
        self.calls = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="ui-workers", daemon=True)

    def _run(self) -> None:
        import asyncio

        from autogen_core import AgentId

        from io_backends import HttpWorkerAgentRuntime
        from tests.e2e._common import Ask, EchoAgent, all_serializers

        async def main() -> None:
            address = f"127.0.0.1:{self.port}"
            echo = HttpWorkerAgentRuntime(address, client_id="echo-worker")
            caller = HttpWorkerAgentRuntime(address, client_id="caller-worker")
            for worker in (echo, caller):
                worker.add_message_serializer(all_serializers())
                await worker.start()
            await echo.register_factory("echo", lambda: EchoAgent())
            self.ready.set()
            deadline = time.monotonic() + 60  # never outlive a stuck test for long
            try:
                while not self.stopping.is_set() and time.monotonic() < deadline:
                    if self.flowing.is_set():
                        await caller.send_message(Ask("x"), AgentId("echo", "k"))
                        self.calls += 1
                    else:
                        await asyncio.sleep(0.05)
            finally:
                await caller.stop()
                await echo.stop()

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported to the test
            self.error = exc
            self.ready.set()

    def __enter__(self) -> CallingWorkers:
        self.thread.start()
        assert self.ready.wait(20) and self.error is None, self.error
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(20)
        assert not self.thread.is_alive() and self.error is None, self.error


def test_the_real_host_serves_the_page_and_a_real_workers_rate_moves(browser: Any) -> None:
    """End to end: ``autogen-http-host`` serves /ui, real workers connect, real calls move the rates."""
    from tests.faults._host_process import host_process

    with host_process() as host:
        browser.get(f"http://127.0.0.1:{host.port}/ui")
        wait_for(browser, lambda d: text(d, "state-text") == "Live", "the page to go live")
        wait_for(browser, lambda d: "No workers connected." in text(d, "t-workers"), "the empty workers table")
        with CallingWorkers(host.port) as workers:
            row = wait_for(browser, lambda d: worker_row(d, "echo-worker"), "the real worker's row")
            assert row[1].startswith("127.0.0.1:") and "echo" in row[3]
            wait_for(browser, lambda d: "echo-worker" in text(d, "t-types"), "the agent type and its owner")
            workers.flowing.set()
            wait_for(browser, lambda d: rate(worker_row(d, "echo-worker")[6]) > 0, "the worker's rate to rise")
            wait_for(browser, lambda d: rate(text(d, "c-calls")) > 0, "the calls/s figure to rise")
            assert workers.calls > 0  # (the rate falling back is the stub's test: it takes the 5 s window)
        wait_for(browser, lambda d: worker_row(d, "echo-worker") is None, "the stopped worker to leave")
        assert severe(browser) == [], "script or CSP errors in the page"
