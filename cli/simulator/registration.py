"""Registering the simulated fleet in bulk, and the tokens kept for it on local disk.

``POST /api/v1/admin/devices/import`` takes up to :data:`IMPORT_CHUNK` devices a request and
answers ``{"created": [{"device_id", "token"}], "existing": [ids]}``. Every device is imported
with the token derived from the seed (:func:`cli.simulator.payloads.device_token`), so the
devices an earlier run with the same seed registered come back as ``existing`` with tokens this
run already knows. The tokens are written to a file of mode 0600 under the state directory.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from cli.simulator.payloads import device_token
from cli.simulator.plan import IMPORT_CHUNK


class RegistrationError(RuntimeError):
    """The admin API refused or failed the import (the message carries its answer)."""


def import_bodies(seed: int, device_ids: Sequence[str]) -> list[dict[str, object]]:
    """The import route's bodies for ``device_ids``, :data:`IMPORT_CHUNK` devices each."""
    devices = [
        {"device_id": device_id, "token_plain": device_token(seed, device_id),
         "profile": "simulated", "tags": ["simulated"], "metadata": {"simulator_seed": seed}}
        for device_id in device_ids
    ]  # fmt: skip
    return [
        {"devices": devices[start : start + IMPORT_CHUNK]}
        for start in range(0, len(devices), IMPORT_CHUNK)
    ]


async def register(
    client: httpx.AsyncClient, admin_token: str, seed: int, device_ids: Sequence[str]
) -> dict[str, str]:
    """Import the devices; their tokens by id. Raises RegistrationError."""
    tokens: dict[str, str] = {}
    headers = {"Authorization": f"Bearer {admin_token}"}
    for body in import_bodies(seed, device_ids):
        answer = await client.post("/api/v1/admin/devices/import", json=body, headers=headers)
        if answer.status_code in (404, 405):  # a server without the import route
            tokens.update(await _one_by_one(client, headers, body))
            continue
        if answer.status_code != 200:
            raise RegistrationError(
                f"device import answered {answer.status_code}: {answer.text[:500]}"
            )
        tokens.update(tokens_from_answer(seed, answer.json()))
    return tokens


async def _one_by_one(
    client: httpx.AsyncClient, headers: dict[str, str], body: dict[str, object]
) -> dict[str, str]:
    """Register through ``POST /api/v1/admin/devices``, a few at a time (409: it exists)."""
    devices = body["devices"]
    if not isinstance(devices, list):
        raise TypeError("an import body holds a list of devices")
    gate = asyncio.Semaphore(16)
    tokens: dict[str, str] = {}

    async def create(device: dict[str, Any]) -> None:
        async with gate:
            answer = await client.post("/api/v1/admin/devices", json=device, headers=headers)
        if answer.status_code not in (201, 409):
            raise RegistrationError(
                f"creating {device['device_id']} answered {answer.status_code}: {answer.text[:300]}"
            )
        tokens[device["device_id"]] = device["token_plain"]

    await asyncio.gather(*(create(device) for device in devices))
    return tokens


def tokens_from_answer(seed: int, answer: dict[str, object]) -> dict[str, str]:
    """Tokens of the created devices as answered, of existing ones as derived from the seed."""
    created = answer.get("created", [])
    existing = answer.get("existing", [])
    if not isinstance(created, list) or not isinstance(existing, list):
        raise RegistrationError(f"unexpected import answer: {str(answer)[:300]}")
    tokens = {str(item["device_id"]): str(item["token"]) for item in created}
    tokens.update({str(device_id): device_token(seed, str(device_id)) for device_id in existing})
    return tokens


def state_file(state_dir: Path, seed: int, prefix: str) -> Path:
    return state_dir / f"devices-{prefix}-{seed}.json"


def save_tokens(path: Path, tokens: dict[str, str]) -> None:
    """Merge ``tokens`` into the file at ``path``, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    known = load_tokens(path)
    known.update(tokens)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(known, out, indent=0, sort_keys=True)
    os.chmod(path, 0o600)  # an older file may have been made with a looser mode


def load_tokens(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    loaded = json.loads(path.read_text())
    return {str(key): str(value) for key, value in loaded.items()}
