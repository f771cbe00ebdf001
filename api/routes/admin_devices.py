"""The device registry over HTTP: seed 004's admin API and seed 002's metadata update.

Every change is stored in Postgres, then published to ``fleet.devices.v1`` and acked, before
the answer (see :mod:`connectors.registry`). A 503 after a change means it is stored but not
confirmed on the topic: retrying the request publishes it again, whatever the retry answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import msgspec
from fastapi import APIRouter, Depends, Query, Request, Response, status

from api.auth import authenticated_device as _authenticated_device
from api.auth import bearer_token, is_admin_token, require_admin, require_device
from api.deps import SettingsDep
from api.device_import import checked_items, import_errors
from api.device_models import (
    DeviceCreate,
    DeviceImport,
    DeviceList,
    DeviceOut,
    DevicePatch,
    DeviceWithToken,
    ImportOutcome,
    MetadataUpdate,
    TokenRotation,
)
from api.devices import RegistryDep
from api.problems import ProblemError
from api.registry_problems import conflict, not_found, registry_errors
from connectors.postgres.devices import DeviceQuery, TokenInUse
from schemas.devices import LABEL_PATTERN, DeviceChanges, NewDevice, OperatorMetadata
from schemas.errors import field_error_from_message, one_line
from schemas.settings import Settings

router = APIRouter(
    prefix="/api/v1/admin/devices", tags=["admin"], dependencies=[Depends(require_admin)]
)
devices_router = APIRouter(prefix="/api/v1/devices", tags=["devices"])
IMPORT_PATH = f"{router.prefix}/import"
"""Its body limit is its own (api.device_models.IMPORT_MAX_BODY_BYTES), set in the app."""

# Query parameters are checked by pydantic's Rust regex engine, which has no \Z; its $ matches
# only at the very end.
_LABEL = LABEL_PATTERN.replace("\\Z", "$")
_PREFIX = r"^[^\x00-\x1f\x7f]{1,128}$"


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_device(
    body: DeviceCreate, registry: RegistryDep, settings: SettingsDep
) -> DeviceWithToken:
    """Register a device; the answer carries its token, shown this once."""
    with device_errors(settings):
        new = msgspec.convert(body.registry_fields(), NewDevice)
        device, token = await registry.create(new, body.token_plain)
    return DeviceWithToken.with_token(device, token)


@router.post("/import")
async def import_devices(
    body: DeviceImport, registry: RegistryDep, settings: SettingsDep
) -> ImportOutcome:
    """Register up to 10,000 devices at once: one insert, one batched publish, acked before
    the answer. Devices already registered are left as they are and listed in ``existing``, so
    an import can be re-run after a failure. One invalid or repeated item fails the whole
    request (422, nothing stored); a token that is another device's: 409 naming the item."""
    items = checked_items(body)
    with import_errors(settings, items):
        result = await registry.create_many(items)
    return ImportOutcome.of(result.created, result.existing)


@router.get("")
async def list_devices(
    registry: RegistryDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
    enabled: bool | None = None,
    profile: Annotated[str | None, Query(pattern=_LABEL)] = None,
    tag: Annotated[str | None, Query(pattern=_LABEL)] = None,
    search: Annotated[
        str | None, Query(pattern=_PREFIX, description="device_id or name prefix")
    ] = None,
) -> DeviceList:
    """Devices ordered by device_id, with paging and filters."""
    query = DeviceQuery(limit, offset, enabled, profile, tag, search)
    with device_errors(settings):
        page = await registry.list(query)
    items = [DeviceOut.of(device) for device in page.items]
    return DeviceList(items=items, total=page.total, limit=limit, offset=offset)


@router.get("/{device_id}")
async def get_device(device_id: str, registry: RegistryDep, settings: SettingsDep) -> DeviceOut:
    with device_errors(settings):
        device = await registry.get(device_id)
    if device is None:
        raise _not_found(device_id)
    return DeviceOut.of(device)


@router.patch("/{device_id}")
async def update_device(
    device_id: str, body: DevicePatch, registry: RegistryDep, settings: SettingsDep
) -> DeviceOut:
    """Change ``is_enabled``, ``metadata`` (replaced whole), ``profile``, ``tags``, ``name`` or
    ``inactivity_timeout_s``. Disabling takes effect on every API instance within seconds."""
    with device_errors(settings):
        changes = msgspec.convert(body.changes(), DeviceChanges)
        device = await registry.update(device_id, changes)
    return DeviceOut.of(device)


@router.post("/{device_id}/rotate-token")
async def rotate_token(
    device_id: str,
    registry: RegistryDep,
    settings: SettingsDep,
    body: TokenRotation | None = None,
) -> DeviceWithToken:
    """Give the device a new token (random unless ``token_plain`` is sent); the old one stops
    working on every API instance within seconds."""
    with device_errors(settings):
        device, token = await registry.rotate_token(device_id, body.token_plain if body else None)
    return DeviceWithToken.with_token(device, token)


@router.delete("/{device_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_device(device_id: str, registry: RegistryDep, settings: SettingsDep) -> Response:
    with device_errors(settings):
        await registry.delete(device_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@devices_router.post("/metadata")
async def update_metadata(
    body: MetadataUpdate, request: Request, registry: RegistryDep, settings: SettingsDep
) -> DeviceOut:
    """Seed 002: replace a device's metadata. Called by the device itself (its token in
    ``X-API-Key`` or ``Authorization: Bearer``) or by an operator with the admin token.

    ``point_id`` and ``register_id`` (seed 004's placement of an audio device, which its audio
    chunks must match) are the operator's: a device's own update keeps them as stored when it
    leaves them out, and gets 403 problem+json naming the field (``metadata.point_id``...),
    nothing changed, when it sends another value, ``null``, or one the operator never set.
    Only the admin token changes them, here (the metadata as sent, replaced whole) or with
    ``PATCH /api/v1/admin/devices/{device_id}``."""
    admin_token = bearer_token(request)
    by_admin = admin_token is not None and is_admin_token(admin_token, settings)
    if not by_admin:
        require_device(_authenticated_device(request), body.device_id)
    with device_errors(settings):
        if by_admin:
            device = await registry.update(body.device_id, DeviceChanges(metadata=body.metadata))
        else:
            device = await registry.update_own_metadata(body.device_id, body.metadata)
    return DeviceOut.of(device)


@contextmanager
def device_errors(settings: Settings) -> Iterator[None]:
    """Registry outcomes as problem documents that name the field."""
    with registry_errors(settings, "device_id", _not_found):
        try:
            yield
        except TokenInUse as exc:
            raise conflict(str(exc), "token_plain") from exc
        except OperatorMetadata as exc:
            raise ProblemError(
                403,
                "Forbidden",
                str(exc),
                errors=[
                    {
                        "field": f"body.metadata.{exc.key}",
                        "message": "set by the operator; only the admin API changes it",
                        "type": "forbidden",
                    }
                ],
            ) from exc
        except msgspec.ValidationError as exc:
            error = field_error_from_message(str(exc))
            field = ".".join(str(part) for part in ("body", *error.loc))  # as pydantic names it
            raise ProblemError(
                422,
                "Invalid request",
                error.describe(),
                errors=[{"field": field, "message": error.message, "type": error.type}],
            ) from exc


def _not_found(device_id: str) -> ProblemError:
    return not_found(
        f"device {one_line(device_id)} is not registered", "device_id", "no such device"
    )
