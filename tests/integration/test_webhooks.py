"""Run webhooks against a real local HTTP receiver (issue 17): delivered once with a valid
signature and the run's fields; retried while the receiver is down and delivered when it comes
up; a loopback URL is refused at submit unless ``webhook_allow`` allows it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from mcpexec.app import App
from mcpexec.errors import WebhookRefused
from mcpexec.models import RunRequest
from mcpexec.store.base import Delivery
from mcpexec.webhooks import SIGNATURE_HEADER, check_target, verify

from .task_app import ADMIN, real_app, until
from .webhook_receiver import Receiver, free_port

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

SECRET = "s3cret-for-tests"
LOOPBACK: dict[str, Any] = {"webhook_secret": SECRET, "webhook_allow": ["*", "127.0.0.1/32"]}


def request(url: str, *, shell: str = "exit 0", on: list[str] | None = None) -> RunRequest:
    notify: dict[str, object] = {"webhook": url}
    if on is not None:
        notify["on"] = on
    return RunRequest.model_validate({"shell": shell, "timeout_s": 30, "notify": notify})


async def settled(app: App, run_id: str, *, attempts: int = 0) -> Delivery:
    """The run's one delivery once it is delivered (or, with ``attempts``, still pending after
    that many attempts); bounded. Deliveries announce nothing, so this re-reads the store."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        [delivery] = await app.store.list_deliveries(subject=run_id)
        if attempts and delivery.attempts >= attempts and delivery.status == "pending":
            return delivery
        if not attempts and delivery.status == "delivered":
            return delivery
        assert loop.time() < deadline, delivery
        await app.events.wait_run(run_id, 0.05)


async def test_a_finished_run_is_delivered_signed(tmp_path: Path) -> None:
    receiver = Receiver(0).start()
    try:
        async with real_app(tmp_path, **LOOPBACK) as app:
            ok, _ = await app.submit(request(receiver.url), ADMIN)
            bad, _ = await app.submit(request(receiver.url, shell="exit 3"), ADMIN)
            quiet, _ = await app.submit(request(receiver.url, on=["failed"]), ADMIN)
            for run_id, status in ((ok.id, "completed"), (bad.id, "failed")):
                await until(app, run_id, status)
            await until(app, quiet.id, "completed")
            got = await asyncio.to_thread(receiver.wait_for, 2)
            bodies = {json.loads(r.body)["run_id"]: r for r in got}
            assert set(bodies) == {ok.id, bad.id}  # the quiet run notifies only on failure
            expected = ((ok.id, "run.completed", 0), (bad.id, "run.failed", 3))
            for run_id, event, exit_code in expected:
                hit = bodies[run_id]
                assert verify(SECRET, hit.headers[SIGNATURE_HEADER], hit.body)
                assert not verify("another", hit.headers[SIGNATURE_HEADER], hit.body)
                body = json.loads(hit.body)
                assert body["type"] == event == hit.headers["Mcpexec-Event"]
                assert (body["status"], body["exit_code"], body["tenant"]) == (
                    event.removeprefix("run."),
                    exit_code,
                    "default",
                )
                assert all(body[k] for k in ("created_at", "started_at", "finished_at"))
                assert hit.headers["Host"] == f"127.0.0.1:{receiver.port}"
                delivery = await settled(app, run_id)
                assert delivery.attempts == 1
                assert hit.headers["Mcpexec-Delivery"] == str(delivery.id)
            assert await app.store.list_deliveries(subject=quiet.id) == []
    finally:
        receiver.stop()
    assert len(receiver.received) == 2  # nothing delivered twice


async def test_a_receiver_that_is_down_gets_it_later(tmp_path: Path) -> None:
    port = free_port()
    receiver = Receiver(port)
    fast: dict[str, Any] = {
        "webhook_retry_s": 0.05,
        "webhook_max_delay_s": 0.2,
        "webhook_poll_s": 0.2,
    }
    try:
        async with real_app(tmp_path, **LOOPBACK, **fast) as app:
            run, _ = await app.submit(request(receiver.url), ADMIN)
            await until(app, run.id, "completed")
            delivery = await settled(app, run.id, attempts=3)  # failed twice at least: closed port
            assert "Connect" in (delivery.last_error or "")
            receiver.start()  # the receiver comes up on its address
            [hit] = await asyncio.to_thread(receiver.wait_for, 1)
            assert verify(SECRET, hit.headers[SIGNATURE_HEADER], hit.body)
            assert json.loads(hit.body)["run_id"] == run.id
            assert (await settled(app, run.id)).attempts >= 3
    finally:
        receiver.stop()


async def test_a_loopback_url_is_refused_unless_allowed(tmp_path: Path) -> None:
    receiver = Receiver(0).start()
    try:
        async with real_app(tmp_path, workers=0, webhook_secret=SECRET) as app:
            for url in (
                receiver.url,
                "http://localhost:9/x",
                "http://[::1]:9/x",
                "http://169.254.169.254/latest/meta-data",
                "http://10.1.2.3/x",
                "http://[::ffff:127.0.0.1]/x",
            ):
                with pytest.raises(WebhookRefused) as refused:
                    await app.submit(request(url), ADMIN)
                assert refused.value.code == "webhook_refused"
                assert refused.value.http_status == 403
        async with real_app(tmp_path, workers=0, webhook_allow=["hooks.example.com"]) as app:
            with pytest.raises(WebhookRefused, match="no webhook_secret"):
                await app.submit(request("https://hooks.example.com/x"), ADMIN)
            with pytest.raises(WebhookRefused, match="not in webhook_allow"):
                await check_target("https://other.example.com/x", app.webhooks.allow)
        async with real_app(tmp_path, workers=0, **LOOPBACK) as app:
            run, _ = await app.submit(request(receiver.url), ADMIN)
            assert run.notify is not None
            assert run.notify.webhook == receiver.url
    finally:
        receiver.stop()


async def test_mcp_submit_run_takes_notify(tmp_path: Path) -> None:
    from mcp import Client
    from mcp import types as mt

    from mcpexec.mcp_server.server import build_mcp_server

    receiver = Receiver(0).start()
    try:
        async with real_app(tmp_path, **LOOPBACK) as app:
            server = build_mcp_server(app, local=True)
            try:
                async with Client(server) as client:
                    notify = {"webhook": receiver.url, "on": ["completed"]}
                    done = await client.call_tool("submit_run", {"shell": "true", "notify": notify})
                    refused = await client.call_tool(
                        "submit_run", {"shell": "true", "notify": {"webhook": "http://10.0.0.1/"}}
                    )
            finally:
                await server.watcher.close()
            assert not done.is_error, done.content
            assert isinstance(done.structured_content, dict)
            run_id = done.structured_content["run_id"]
            await until(app, run_id, "completed")
            [hit] = await asyncio.to_thread(receiver.wait_for, 1)
            assert json.loads(hit.body)["run_id"] == run_id
            assert refused.is_error
            block = refused.content[0]
            assert isinstance(block, mt.TextContent)
            assert "webhook_allow" in block.text
    finally:
        receiver.stop()


async def test_runs_without_webhooks_take_no_claim(tmp_path: Path) -> None:
    """Every run change wakes the delivery loop: with nothing due it only looks (a read), never
    claims (a write transaction, which SQLite's one writer would queue behind)."""
    async with real_app(tmp_path, **LOOPBACK) as app:
        claims = 0
        claim = app.store.claim_deliveries

        async def counted(*args: Any, **kwargs: Any) -> list[Delivery]:
            nonlocal claims
            claims += 1
            return await claim(*args, **kwargs)

        app.store.claim_deliveries = counted  # type: ignore[method-assign]
        run, _ = await app.submit(RunRequest(shell="exit 0"), ADMIN)
        await until(app, run.id, "completed")
        assert await app.webhooks.deliver_due() == 0
        assert claims == 0
        receiver = Receiver(0).start()
        try:
            noted, _ = await app.submit(request(receiver.url), ADMIN)
            await until(app, noted.id, "completed")
            await settled(app, noted.id)
            assert claims >= 1  # a due delivery is claimed
        finally:
            receiver.stop()
