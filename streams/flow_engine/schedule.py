"""Alert schedules: is a reading's time inside a daily window, in the device's time zone?"""

from __future__ import annotations

import functools
import logging
import zoneinfo
from datetime import datetime, timedelta, tzinfo

from schemas.flows import DAYS, Schedule

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=512)
def zone(name: str) -> tzinfo:
    """The IANA zone ``name``; UTC (logged once) when it is not one."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        log.warning("time zone %r is unknown; schedules use UTC for it", name)
        return zoneinfo.ZoneInfo("UTC")


def in_schedule(schedule: Schedule, ts: datetime, device_timezone: str) -> bool:
    """Whether ``ts`` falls in the schedule's window (``schedule.timezone``, else the device's).

    A window whose end is before its start runs past midnight; its early hours belong to the
    day it started on (``days: [fri]`` with 22:00-06:00 covers Friday night to Saturday 06:00).
    """
    local = ts.astimezone(zone(schedule.timezone or device_timezone))
    start, end = schedule.window()
    now = local.time().replace(tzinfo=None)
    if start < end:
        inside, day = start <= now < end, local
    elif now >= start:
        inside, day = True, local
    else:
        inside, day = now < end, local - timedelta(days=1)
    if not inside:
        return False
    return not schedule.days or DAYS[day.weekday()] in schedule.days
