"""Webhooks (issue 17): outbound targets checked against ``webhook_allow`` (SSRF), signed JSON
bodies, and the delivery loop that drains the store's durable ``webhook_deliveries``.

A delivery is a row, not a run: a run's end queues one in the transaction of its status change
(migration 0012's trigger), an alert's change queues one with its state (``record_alert``). Any
process running the loop claims due rows under a lease (``claim_deliveries``: the row's
``next_at`` moves past the lease), POSTs, and reports fenced by the attempt number: delivered, due
again after a backoff (``retry.backoff_delay``), or failed for good after
``webhook_max_attempts``. A receiver that is down gets it when it is back; a process that dies
mid-delivery leaves the row due again when its lease ends (at-least-once: receivers dedupe on
``Mcpexec-Delivery``).

The target is checked at submit (and at alert-rule load) and again before every attempt: the
host's every address must be public (``is_global``) unless inside a network of
``webhook_allow``, and the request goes to the address that was checked (the ``Host`` header and
TLS SNI keep the name), so a DNS answer that changes between check and connect is not followed.
Redirects are not followed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import random
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from mcpexec import __version__
from mcpexec.aio import wait_event
from mcpexec.errors import WebhookRefused
from mcpexec.models import Backoff, RetryPolicy, Run, utcnow
from mcpexec.retry import backoff_delay
from mcpexec.settings import Settings
from mcpexec.store.base import Delivery, Store

if TYPE_CHECKING:
    from mcpexec.events import EventHub

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
SIGNATURE_HEADER = "Mcpexec-Signature"
#: How long a claimed delivery is ours before another process may take it.
LEASE_S = 60.0
_RESOLVE_TIMEOUT_S = 5.0
PRUNE_EVERY = timedelta(hours=1)
#: After a round woken by a run change, changes that arrive within this time share the next
#: round: at 200 finishes a second a round per change would be several reads per run, for
#: webhooks that fire on a few of them. A delivery is at most this much later.
SETTLE_S = 0.05


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL: where to connect (``address``) and what to ask for."""

    url: str
    host: str
    address: IPAddress

    def pinned_url(self) -> str:
        """The URL with the checked address in place of the name."""
        parts = urlsplit(self.url)
        ip = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        netloc = ip if parts.port is None else f"{ip}:{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))


class Allowlist:
    """``webhook_allow``: ``*`` (any host), ``HOST``, ``*.DOMAIN``, or an address or network
    (``127.0.0.1``, ``10.0.0.0/8``, ``fd00::/8``) whose addresses are allowed although private,
    loopback or link-local (and whose literal addresses match as hosts)."""

    def __init__(self, entries: list[str]) -> None:
        self.any_host = False
        self.hosts: set[str] = set()
        self.suffixes: list[str] = []
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            if entry == "*":
                self.any_host = True
            elif entry.startswith("*."):
                self.suffixes.append(entry[1:])
            else:
                try:
                    self.networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError:
                    self.hosts.add(entry.rstrip("."))

    def host_allowed(self, host: str) -> bool:
        if self.any_host or host in self.hosts or any(host.endswith(s) for s in self.suffixes):
            return True
        literal = _literal(host)
        return literal is not None and self.network_allowed(literal)

    def network_allowed(self, address: IPAddress) -> bool:
        return any(address in net for net in self.networks if net.version == address.version)

    def address_allowed(self, address: IPAddress) -> bool:
        """Public addresses always; others only inside an allowed network."""
        mapped = getattr(address, "ipv4_mapped", None)
        if mapped is not None:
            address = mapped
        if address.is_global and not address.is_multicast:
            return True
        return self.network_allowed(address)


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


async def resolve(host: str, port: int) -> list[IPAddress]:
    literal = _literal(host)
    if literal is not None:
        return [literal]
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(_RESOLVE_TIMEOUT_S):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError) as exc:
        raise WebhookRefused(
            f"webhook host {host!r} does not resolve ({exc})", field="webhook"
        ) from None
    found: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if address not in found:
            found.append(address)
    return found


async def check_target(url: str, allow: Allowlist, field: str = "notify.webhook") -> Target:
    """The URL's target when every address of its host is allowed; ``WebhookRefused``
    (``webhook_refused``, naming ``field``) otherwise."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower().rstrip(".")
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise WebhookRefused(f"{field}: an http:// or https:// URL with a host", field=field)
    if parts.username is not None or parts.password is not None:
        raise WebhookRefused(f"{field}: credentials in the URL are not accepted", field=field)
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        raise WebhookRefused(f"{field}: the port is not valid", field=field) from None
    if not allow.host_allowed(host):
        raise WebhookRefused(f"{field}: host {host!r} is not in webhook_allow", field=field)
    addresses = await resolve(host, port)
    refused = [a for a in addresses if not allow.address_allowed(a)]
    if refused or not addresses:
        raise WebhookRefused(
            f"{field}: host {host!r} resolves to {refused[0] if refused else 'nothing'}, a "
            "private, loopback or link-local address not allowed by webhook_allow",
            field=field,
        )
    return Target(url=url, host=host, address=addresses[0])


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``t=<unix>,v1=<hex HMAC-SHA256 of "<unix>.<body>">``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, tolerance_s: float = 300.0) -> bool:
    """What a receiver does (also used by the tests): the signature matches and is recent."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def run_body(run: Run, event: str, delivery_id: int) -> dict[str, Any]:
    return {
        "type": event,
        "delivery": delivery_id,
        "run_id": run.id,
        "tenant": run.tenant,
        "status": run.status.value,
        "exit_code": run.exit_code,
        "failure_kind": None if run.failure is None else run.failure.kind.value,
        "attempts": run.attempts,
        "task": run.task,
        "labels": run.labels,
        "created_at": _iso(run.created_at),
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
    }


class Webhooks:
    """``App.webhooks``: the check at submit and the delivery loop."""

    def __init__(self, settings: Settings, store: Store, events: EventHub) -> None:
        self.settings = settings
        self.store = store
        self.allow = Allowlist(settings.webhook_allow)
        self.policy = RetryPolicy(
            max_attempts=settings.webhook_max_attempts,
            backoff=Backoff.EXPONENTIAL,
            delay_s=min(settings.webhook_retry_s, 86_400.0),
            max_delay_s=min(settings.webhook_max_delay_s, 86_400.0),
            jitter=True,
        )
        self._rng = random.Random()  # noqa: S311 - jitter, not a secret
        self._wake = asyncio.Event()
        if settings.webhook_secret:
            # Without a secret no run can ask for a webhook (``check``) and nothing can be
            # sent: the poll alone fails out what an earlier configuration queued, and a run's
            # change costs no store read (one per settle interval under load).
            events.add_change_listener(lambda _run_id: self._wake.set())

    def wake(self) -> None:
        """A delivery may be due (an alert queued one in this process)."""
        self._wake.set()

    async def check(self, url: str, field: str = "notify.webhook") -> None:
        """At submit: refuse a target that delivery would refuse."""
        if not self.settings.webhook_secret:
            raise WebhookRefused(
                f"{field}: webhooks are off on this server (no webhook_secret is set)",
                field=field,
            )
        await check_target(url, self.allow, field)

    # -- delivery -----------------------------------------------------------------------------
    async def run_forever(self) -> None:
        poll = self.settings.webhook_poll_s
        pruned_at: datetime | None = None
        while True:
            try:
                now = utcnow()
                if pruned_at is None or now - pruned_at > PRUNE_EVERY:
                    # Finished deliveries are kept as long as runs (``retention_days``).
                    keep = timedelta(days=self.settings.retention_days)
                    await self.store.prune_deliveries(now - keep)
                    pruned_at = now
                # One read per round; a second only after sending (the next due time moved).
                due = await self.store.next_delivery_at()
                if due is not None and due <= now:
                    await self._send_due(now)
                    due = await self.store.next_delivery_at()
            except Exception:  # a store hiccup: try again on the next round
                log.exception("webhook deliveries: round failed")
                due = None
            wait = poll
            if due is not None:
                wait = min(poll, max((due - utcnow()).total_seconds(), 0.0))
            if wait > 0 and await wait_event(self._wake, wait):
                await asyncio.sleep(min(SETTLE_S, wait))  # let a burst of changes gather
            self._wake.clear()

    async def deliver_due(self, now: datetime | None = None) -> int:
        """Claim the due deliveries and send them (concurrently); how many were sent."""
        now = now or utcnow()
        # Every run change in this process wakes the loop: look (a read) before claiming (a
        # write transaction, SQLite's one writer), so that runs without webhooks cost no write.
        due = await self.store.next_delivery_at()
        if due is None or due > now:
            return 0
        return await self._send_due(now)

    async def _send_due(self, now: datetime) -> int:
        claimed = await self.store.claim_deliveries(now, now + timedelta(seconds=LEASE_S))
        if not claimed:
            return 0
        results = await asyncio.gather(*(self._deliver(d) for d in claimed))
        return sum(results)

    async def _deliver(self, delivery: Delivery) -> bool:
        error: str | None
        final = False
        try:
            body = await self._body(delivery)
            if body is None:
                error, final = "the run no longer exists", True
            else:
                error = await self._post(delivery, body)
        except WebhookRefused as exc:
            error, final = exc.message, True
        now = utcnow()
        if error is None:
            await self.store.finish_delivery(delivery.id, delivery.attempts, now, delivered=True)
            log.info("webhook %s delivered: %s %s", delivery.id, delivery.event, delivery.subject)
            return True
        next_at = None
        if not final and delivery.attempts < self.settings.webhook_max_attempts:
            delay = backoff_delay(self.policy, delivery.attempts, self._rng)
            next_at = now + timedelta(seconds=delay)
        await self.store.finish_delivery(
            delivery.id, delivery.attempts, now, delivered=False, error=error, next_at=next_at
        )
        if next_at is None:
            log.warning(
                "webhook %s failed for good after %d attempts: %s",
                delivery.id,
                delivery.attempts,
                error,
            )
        else:
            log.info("webhook %s attempt %d: %s", delivery.id, delivery.attempts, error)
        return False

    async def _body(self, delivery: Delivery) -> bytes | None:
        if delivery.body is not None:
            data = json.loads(delivery.body) | {"delivery": delivery.id}
        else:
            run = await self.store.get_run(delivery.subject)
            if run is None:
                return None
            data = run_body(run, delivery.event, delivery.id)
        return json.dumps(data, separators=(",", ":")).encode()

    async def _post(self, delivery: Delivery, body: bytes) -> str | None:
        """``None`` when the receiver took it (2xx), else what went wrong. One client per
        delivery: a pooled connection to the same address could carry another host's TLS
        session (SNI) when two hosts share an address."""
        secret = self.settings.webhook_secret
        if not secret:
            return "no webhook_secret is set"
        target = await check_target(delivery.url, self.allow, "webhook")
        timestamp = int(time.time())
        parts = urlsplit(delivery.url)
        host_header = parts.netloc.rsplit("@", 1)[-1]
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"mcpexec/{__version__}",
            "Host": host_header,
            "Mcpexec-Event": delivery.event,
            "Mcpexec-Delivery": str(delivery.id),
            SIGNATURE_HEADER: sign(secret, timestamp, body),
        }
        extensions = {"sni_hostname": target.host} if parts.scheme.lower() == "https" else {}
        import httpx  # here: importing httpx loads rich (its CLI), 0.1 s of every start

        try:
            async with httpx.AsyncClient(
                timeout=self.settings.webhook_timeout_s, follow_redirects=False, trust_env=False
            ) as client:
                response = await client.post(
                    target.pinned_url(), content=body, headers=headers, extensions=extensions
                )
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"
