"""The edge as `fleetstream api` serves it (uvicorn on loopback): hostile bodies get a 4xx over a
real socket, request ids and metrics, and a schemathesis run over the OpenAPI schema finds no
server error."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from schemas.settings import DEV_ADMIN_TOKEN, RateLimit, Settings
from tests.factories import device_ids, reading
from tests.integration.fleet import Fleet
from tests.integration.processes import ApiProcess
from tests.support import free_port, wait_until

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
EXAMPLES_PER_OPERATION = 25


@pytest.fixture
def served(pipeline: Settings, tmp_path: Path) -> Iterator[tuple[ApiProcess, str]]:
    # No per-device rate limit: the fuzzer sends hundreds of requests with one device's token,
    # and 429s would keep it from the code behind the limit.
    api = pipeline.api.model_copy(
        update={"port": free_port(), "rate_limit": RateLimit(per_s=0, burst=1)}
    )
    settings = pipeline.model_copy(update={"api": api})
    with ApiProcess(settings, tmp_path / "api.log") as process:
        yield process, f"http://127.0.0.1:{settings.api.port}"


@pytest.fixture
async def fleet(served: tuple[ApiProcess, str]) -> AsyncIterator[Fleet]:
    api, base = served
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:

        async def ready() -> bool:
            try:
                return (await client.get("/health/ready")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_until(ready, timeout_s=60, what=lambda: f"the API\n{api.log_tail()}")
        yield Fleet(client)


async def test_hostile_bodies_over_a_real_socket_get_4xx(
    fleet: Fleet, served: tuple[ApiProcess, str]
) -> None:
    device = device_ids(1)[0]
    await fleet.enroll([device])
    headers = fleet.headers(device)
    client = fleet.client

    async def endless() -> AsyncIterator[bytes]:
        for _ in range(4000):  # 4 MB, chunked (no Content-Length); the limit is 1 MB
            yield b" " * 1024

    chunked = await client.post(
        "/v1/readings", content=endless(), headers={**headers, "content-type": "application/json"}
    )
    assert chunked.status_code == 413
    declared = await client.post(
        "/v1/readings",
        content=b"[" + b" " * 2_000_000 + b"]",
        headers={**headers, "content-type": "application/json"},
    )
    assert declared.status_code == 413
    nested = await client.post(
        "/v1/readings",
        content=b"[" * 200_000 + b"]" * 200_000,
        headers={**headers, "content-type": "application/json"},
    )
    assert nested.status_code == 422
    nan = await client.post(
        "/v1/readings",
        content=b'{"device_id": "%s", "sensors": {"mq134": {"gas_concentration": NaN}}}'
        % device.encode(),
        headers={**headers, "content-type": "application/json"},
    )
    assert nan.status_code == 422
    text = await client.post(
        "/api/v1/sensor-data", content=b"hello", headers={**headers, "content-type": "text/plain"}
    )
    assert text.status_code == 415
    for response in (chunked, declared, nested, nan, text):
        assert response.headers["content-type"] == "application/problem+json"


async def test_request_ids_json_logs_and_metrics(
    fleet: Fleet, served: tuple[ApiProcess, str]
) -> None:
    api, _ = served
    device = device_ids(1)[0]
    await fleet.enroll([device])
    response = await fleet.client.post(
        "/v1/readings",
        json=reading(device, 1),
        headers={**fleet.headers(device), "X-Request-ID": f"trace-{device}"},
    )
    assert response.status_code == 202, response.text
    assert response.headers["x-request-id"] == f"trace-{device}"
    refused = await fleet.client.post(
        "/v1/readings", json=reading(device, 2), headers={"X-Request-ID": f"refused-{device}"}
    )
    assert refused.status_code == 401

    def logged(request_id: str) -> list[dict[str, object]]:
        lines = api.log_tail(400).splitlines()
        entries = [json.loads(line) for line in lines if line.startswith("{")]
        return [e for e in entries if e.get("request_id") == request_id]

    async def access_logged() -> bool:
        """Problems are access-logged by default (FLEET_API__ACCESS_LOG=problems), 2xx not."""
        return any(
            e.get("route") == "/v1/readings" and e.get("status") == 401
            for e in logged(f"refused-{device}")
        )

    await wait_until(access_logged, timeout_s=10, what=lambda: api.log_tail())
    assert not [e for e in logged(f"trace-{device}") if e.get("status") == 202]
    metrics = (await fleet.client.get("/metrics")).text
    assert 'fleet_api_requests_total{method="POST",route="/v1/readings",status="202"}' in metrics
    assert "fleet_api_producer_queue_depth" in metrics


async def test_schemathesis_finds_no_server_error(
    fleet: Fleet, served: tuple[ApiProcess, str], tmp_path: Path
) -> None:
    api, base = served
    device = device_ids(1)[0]
    await fleet.enroll([device])
    report = tmp_path / "schemathesis.xml"
    command = [
        str(SCHEMATHESIS),
        "run",
        f"{base}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--seed",
        "6",
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        "--workers",
        "1",
        "--no-color",
        "--report",
        "junit",
        "--report-junit-path",
        str(report),
        # A registered device's token and the admin token: requests get past authentication
        # to the validation and storage code (and also try other devices' ids: 403s).
        "-H",
        f"X-API-Key: {fleet.tokens[device]}",
        "-H",
        f"Authorization: Bearer {DEV_ADMIN_TOKEN}",
    ]
    result = await asyncio.to_thread(
        subprocess.run,  # our own dev tool, fixed arguments
        command,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = result.stdout[-8000:] + result.stderr[-2000:]
    errors = [line for line in api.log_tail(100_000).splitlines() if '"ERROR"' in line]
    assert result.returncode == 0, f"{output}\n--- API errors ---\n" + "\n".join(errors[-5:])
    answered = [json.loads(line) for line in api.log_tail(100_000).splitlines() if "status" in line]
    assert answered, "the API logged no request"
    assert [e for e in answered if int(e.get("status", 0)) >= 500] == []


@pytest.mark.parametrize(
    "path", ["/api/v1/devices/metadata", "/api/v1/ingest/rtsp", "/api/v1/admin/devices"]
)
async def test_a_300_mb_body_without_credentials_is_refused_before_it_is_read(
    fleet: Fleet, served: tuple[ApiProcess, str], path: str
) -> None:
    """Only the headers are sent: the answer must come without the body being read (``fleet``:
    the API is serving)."""
    _, base = served
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {300 * 1024 * 1024}\r\n\r\n".encode()
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=5)
    finally:
        writer.close()
    assert status_line.split()[1] == b"413", status_line
