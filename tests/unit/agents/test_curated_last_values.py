from __future__ import annotations

import random
from typing import Any

from agents.curated import LastValues
from schemas.catalogue import measurements


def _sensors(rng: random.Random) -> dict[str, Any]:
    """Readings carrying some of three sensor types, each with some of its fields."""
    sensors: dict[str, Any] = {}
    for sensor in rng.sample(["ld2410", "pir", "mq2"], rng.randint(0, 3)):
        fields = rng.sample(["a", "b", "c", "d"], rng.randint(1, 4))
        sensors[sensor] = {
            name: rng.choice([rng.random(), rng.randint(-5, 5), True]) for name in fields
        }
    return sensors


def test_last_values_equal_updating_with_every_readings_measurements() -> None:
    rng = random.Random(7)
    for _ in range(200):
        readings = [_sensors(rng) for _ in range(rng.randint(1, 12))]
        expected: dict[str, Any] = {}
        folded = LastValues()
        for sensors in readings:
            expected.update(measurements(sensors))
            folded.add(sensors)

        assert dict(folded.flattened()) == expected


def test_last_values_keep_a_field_an_older_reading_had_and_the_newest_lacks() -> None:
    folded = LastValues()
    folded.add({"ld2410": {"presence": True, "distance_cm": 120}})
    folded.add({"ld2410": {"presence": False}, "pir": {"motion_detected": True}})

    assert dict(folded.flattened()) == {
        "ld2410.presence": False,
        "ld2410.distance_cm": 120,
        "pir.motion_detected": True,
    }
