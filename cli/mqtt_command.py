"""``fleetstream mqtt``: the MQTT bridge in the foreground (SIGTERM or Ctrl-C stops it)."""

from __future__ import annotations

import asyncio
import logging
import signal

from cli.runner import operator_errors
from schemas.settings import Settings, get_settings
from streams.runtime import tune_gc


def mqtt_front() -> None:
    """Run an MQTT front: devices connect with their own credentials and get each QoS 1
    PUBACK after Kafka acked the reading (start several: they share the port)."""
    settings = get_settings()
    _logging(settings)
    tune_gc(settings.gc_gen0_threshold)
    with operator_errors():
        asyncio.run(_serve_front(settings))


async def _serve_front(settings: Settings) -> None:
    from api.limits import RateLimiter
    from connectors.mqtt.front.server import serve

    # the API's per-device limit, for seed 002's anonymous publishers (api/compat_auth.py)
    limiter = RateLimiter(settings.api.rate_limit, settings.api.rate_limit_profiles)
    await serve(settings, _stop_on_signals(), limiter)


def _logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def mqtt() -> None:
    """Run the MQTT bridge: device topics → fleet.raw.v1; PUBACK once Kafka acked."""
    settings = get_settings()
    _logging(settings)
    tune_gc(settings.gc_gen0_threshold)
    with operator_errors():
        asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> None:
    from connectors.mqtt.service import serve

    await serve(settings, _stop_on_signals())
