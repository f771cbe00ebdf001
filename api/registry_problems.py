"""What a registry outcome answers over HTTP, the same for devices, flows and alerts.

* the record does not exist: **404** whose ``errors`` name the id field;
* it exists already: **409** naming the id field;
* the change is stored but not confirmed on the registry topic
  (:class:`~connectors.registry.NotPublished`), or Postgres is not reachable
  (:class:`~connectors.postgres.errors.DatabaseUnavailable`): **503** with ``Retry-After``;
  retrying the request is the remedy (it publishes again, whatever it answers).

Each route module adds what only its kind raises (a token in use, a definition that does not
compile).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from api.problems import ProblemError
from connectors.postgres.errors import DatabaseUnavailable
from connectors.postgres.registry import RecordExists, RecordNotFound
from connectors.registry import NotPublished
from schemas.settings import Settings


@contextmanager
def registry_errors(
    settings: Settings, id_field: str, not_found: Callable[[str], ProblemError]
) -> Iterator[None]:
    """The outcomes every registry shares as problem documents; ``not_found(record_id)``."""
    try:
        yield
    except RecordNotFound as exc:
        raise not_found(exc.record_id) from exc
    except RecordExists as exc:
        raise conflict(str(exc), id_field) from exc
    except (NotPublished, DatabaseUnavailable) as exc:
        raise unavailable(exc, settings) from exc


def not_found(detail: str, field: str, message: str) -> ProblemError:
    return ProblemError(404, "Not found", detail, errors=[_field(field, message, "not_found")])


def conflict(detail: str, field: str) -> ProblemError:
    return ProblemError(409, "Conflict", detail, errors=[_field(field, detail, "conflict")])


def unavailable(exc: Exception, settings: Settings) -> ProblemError:
    retry = {"Retry-After": str(settings.api.retry_after_s)}
    return ProblemError(503, "Service unavailable", str(exc), headers=retry)


def _field(field: str, message: str, kind: str) -> dict[str, str]:
    return {"field": field, "message": message, "type": kind}
