"""Bulk registration (``POST /api/v1/admin/devices/import``): an import's items checked, and
its registry outcomes as problem documents.

Validation is all or nothing: one invalid item, or an id (or a token: a ``token_plain``, or a
``token_sha256``, the hash of a device's token imported from another registry) repeated inside
the body, fails the whole request with 422 naming every such item (``body.devices.<i>.<field>``,
at most :data:`MAX_ERRORS` of them), and nothing is stored. ``fleetstream devices import`` uses
the same checks row by row (it skips a bad row, counts it as failed and goes on).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import msgspec

from api.device_models import DeviceCreate, DeviceImport
from api.problems import ProblemError
from api.registry_problems import conflict, unavailable
from connectors.postgres.devices import TokenInUse
from connectors.postgres.errors import DatabaseUnavailable
from connectors.registry import HashedToken, ImportNotPublished, ImportToken
from schemas.devices import NewDevice, hash_token
from schemas.errors import FieldError, field_error_from_message
from schemas.settings import Settings

MAX_ERRORS = 100
"""Item errors listed in one 422 answer (a whole body of bad items would make a huge one)."""

ImportItem = tuple[NewDevice, ImportToken]
"""A device to register and its token: plain, its hash (``HashedToken``), or ``None`` (a random
one)."""


def new_device(item: DeviceCreate) -> NewDevice:
    """The registry's struct of one item; raises ``msgspec.ValidationError`` (rare: pydantic
    has checked the same rules already)."""
    return msgspec.convert(item.registry_fields(), NewDevice)


def field_error(exc: msgspec.ValidationError) -> FieldError:
    return field_error_from_message(str(exc))


def token_key(token: ImportToken) -> str | None:
    """What makes two items' tokens the same token: a plain token and its hash are one."""
    if isinstance(token, HashedToken):
        return token.sha256
    return None if token is None else hash_token(token)


def token_field(token: ImportToken) -> str:
    """The field an item's token came in."""
    return "token_sha256" if isinstance(token, HashedToken) else "token_plain"


def checked_items(body: DeviceImport) -> list[ImportItem]:
    """The body's devices, or 422 naming each invalid or repeated item; nothing is stored."""
    first_of_id: dict[str, int] = {}
    first_of_token: dict[str, int] = {}
    errors: list[dict[str, str]] = []
    items: list[ImportItem] = []
    for index, item in enumerate(body.devices):
        where = f"body.devices.{index}"
        if (first := first_of_id.setdefault(item.device_id, index)) != index:
            errors.append(_error(f"{where}.device_id", f"repeats item {first}", "duplicate"))
        token = item.token()
        key = token_key(token)
        if key is not None and (first := first_of_token.setdefault(key, index)) != index:
            field = f"{where}.{token_field(token)}"
            errors.append(_error(field, f"repeats item {first}", "duplicate"))
        try:
            items.append((new_device(item), token))
        except msgspec.ValidationError as exc:
            error = field_error(exc)
            field = ".".join(str(part) for part in (where, *error.loc))
            errors.append(_error(field, error.message, error.type))
    if errors:
        raise ProblemError(
            422,
            "Invalid request",
            f"{len(errors)} item(s) of the import are invalid; nothing was stored",
            errors=errors[:MAX_ERRORS],
        )
    return items


@contextmanager
def import_errors(settings: Settings, items: list[ImportItem]) -> Iterator[None]:
    """409 naming the item whose token is another device's (nothing stored); 503 with
    ``Retry-After`` when Postgres is away, or when the devices are stored but not confirmed on
    the topic: then the problem document carries ``created`` (with the tokens, which exist
    nowhere else) and ``existing``, and a retry lists those devices as existing and publishes
    them."""
    try:
        yield
    except TokenInUse as exc:
        raise conflict(str(exc), _token_field(items, exc.device_id)) from exc
    except ImportNotPublished as exc:
        problem = unavailable(exc, settings)
        problem.extra["created"] = [
            {"device_id": device_id, "token": token} for device_id, token in exc.result.created
        ]
        problem.extra["existing"] = exc.result.existing
        raise problem from exc
    except DatabaseUnavailable as exc:
        raise unavailable(exc, settings) from exc


def _token_field(items: list[ImportItem], device_id: str | None) -> str:
    for index, (new, token) in enumerate(items):
        if new.device_id == device_id:
            return f"body.devices.{index}.{token_field(token)}"
    return "body.devices"


def _error(field: str, message: str, kind: str) -> dict[str, str]:
    return {"field": field, "message": message, "type": kind}
