"""Problem answers of the media routes, each naming the field at fault."""

from __future__ import annotations

from api.problems import ProblemError


def invalid(field: str | None, message: str, kind: str = "invalid") -> ProblemError:
    """422: a form field, file or JSON field is missing, repeated or wrong."""
    return ProblemError(
        422,
        "Invalid upload",
        f"{field}: {message}" if field else message,
        errors=[{"field": field, "message": message, "type": kind}],
    )


def too_large(field: str, limit: int) -> ProblemError:
    return ProblemError(
        413,
        "Upload too large",
        f"{field}: larger than {limit} bytes; nothing was stored",
        errors=[{"field": field, "message": f"larger than {limit} bytes", "type": "size"}],
    )


def unsupported(field: str, message: str) -> ProblemError:
    return ProblemError(
        415,
        "Unsupported media type",
        f"{field}: {message}",
        errors=[{"field": field, "message": message, "type": "media_type"}],
    )


def unavailable(detail: str, retry_after_s: int) -> ProblemError:
    return ProblemError(
        503, "Service unavailable", detail, headers={"Retry-After": str(retry_after_s)}
    )
