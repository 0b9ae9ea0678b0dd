"""Property: arbitrary Unicode (lone surrogates included) and arbitrary bytes in every text field
of a run request either get a 422 or come back unchanged through submit → get → list, against a
real ``serve`` (no workers: the runs stay stored, nothing executes)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import Server, make_server

PLACEHOLDER = "@@FUZZ@@"

#: Every text field of a run request: where the value goes, and how to read it back from a run.
Getter = Callable[[dict[str, Any]], Any]
FIELDS: dict[str, tuple[dict[str, Any], Getter]] = {
    "shell": ({"shell": PLACEHOLDER}, lambda r: r["spec"]["shell"]),
    "command": ({"command": ["echo", PLACEHOLDER]}, lambda r: r["spec"]["command"][1]),
    "script.source": (
        {"script": {"language": "sh", "source": PLACEHOLDER}},
        lambda r: r["spec"]["script"]["source"],
    ),
    "env value": ({"shell": "true", "env": {"V": PLACEHOLDER}}, lambda r: r["spec"]["env"]["V"]),
    "env name": (
        {"shell": "true", "env": {PLACEHOLDER: "v"}},
        lambda r: next(iter(r["spec"]["env"])),
    ),
    "input content": (
        {"shell": "true", "inputs": {"f": PLACEHOLDER}},
        lambda r: r["spec"]["inputs"]["f"],
    ),
    "input file content": (
        {"shell": "true", "inputs": {"f": {"content": PLACEHOLDER}}},
        lambda r: r["spec"]["inputs"]["f"]["content"],
    ),
    "input name": (
        {"shell": "true", "inputs": {PLACEHOLDER: "x"}},
        lambda r: next(iter(r["spec"]["inputs"])),
    ),
    "label value": ({"shell": "true", "labels": {"v": PLACEHOLDER}}, lambda r: r["labels"]["v"]),
    "label key": (
        {"shell": "true", "labels": {PLACEHOLDER: "x"}},
        lambda r: next(k for k in r["labels"] if k != "case"),
    ),
    "secret name": ({"shell": "true", "secrets": [PLACEHOLDER]}, lambda r: r["spec"]["secrets"][0]),
    "idempotency key": (
        {"shell": "true", "idempotency_key": PLACEHOLDER},
        lambda r: r["idempotency_key"],
    ),
}

#: Any code point, surrogates (category Cs) included.
any_text = st.text(st.characters(exclude_categories=()), max_size=40)


@pytest.fixture(scope="module")
def store_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = make_server(tmp_path_factory.mktemp("roundtrip"), workers=0, MCPEXEC_SANDBOX="none")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def http(store_only: Server) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {store_only.token}", "Content-Type": "application/json"}
    with httpx.Client(base_url=store_only.url, headers=headers, timeout=30) as client:
        yield client


def _body(template: dict[str, Any], case: str, value: str | bytes) -> tuple[bytes, str | None]:
    """The request body with ``value`` in place of the placeholder, and the text the server
    should have parsed (``None`` when the bytes are not UTF-8 or not valid JSON text)."""
    body = json.loads(json.dumps(template))
    body.setdefault("labels", {})["case"] = case
    if "idempotency_key" in body:
        body["idempotency_key"] = case + PLACEHOLDER  # unique per case, fuzzed text after it
    text = json.dumps(body)  # ASCII: a lone surrogate goes as a \\udXXX escape
    if isinstance(value, str):
        encoded = json.dumps(value)[1:-1].encode()
        return text.replace(PLACEHOLDER, "\0").encode().replace(b"\0", encoded), value
    # Raw bytes inside the JSON string, only quote and backslash escaped.
    raw = value.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
    data = text.replace(PLACEHOLDER, "\0").encode().replace(b"\0", raw)
    try:
        json.loads(data)
    except ValueError:  # not UTF-8, or raw control characters
        return data, None
    return data, value.decode()


@pytest.mark.parametrize("field", list(FIELDS))
def test_text_fields_are_refused_or_round_trip(http: httpx.Client, field: str) -> None:
    template, read = FIELDS[field]

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(value=st.one_of(any_text, st.binary(max_size=40)))
    def check(value: str | bytes) -> None:
        case = uuid.uuid4().hex
        data, expected = _body(template, case, value)
        response = http.post("/api/v1/runs", content=data)
        if response.status_code == 422:
            error = response.json()["error"]
            assert error["code"] == "invalid_request"
            assert error["details"]["errors"][0]["field"]
            return
        assert response.status_code == 202, (response.status_code, response.text)
        assert expected is not None, "accepted a body that is not valid JSON text"
        if field == "idempotency key":
            expected = case + expected
        run_id = response.json()["id"]
        assert read(response.json()) == expected
        got = http.get(f"/api/v1/runs/{run_id}")
        assert got.status_code == 200, got.text
        assert read(got.json()) == expected
        listed = http.get("/api/v1/runs", params={"label": f"case={case}"})
        assert listed.status_code == 200, listed.text
        [run] = listed.json()["runs"]
        assert run["id"] == run_id
        assert read(run) == expected

    check()


def test_the_property_sees_surrogates(tmp_path: Path) -> None:
    """The strategy really produces lone surrogates (else the property proves little)."""
    data, expected = _body(FIELDS["label value"][0], "c", "\ud800")
    assert b"\\ud800" in data
    assert expected == "\ud800"
