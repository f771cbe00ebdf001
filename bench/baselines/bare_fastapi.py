"""Baseline: a bare FastAPI endpoint, the ceiling for one reading per request.

``POST /v1/readings`` takes one reading as a Pydantic body (the seeds' services' shape: a device
id, a timestamp and a sensors object) and answers 202 with a small JSON body. No Kafka, no auth,
no middleware, no logging: what FastAPI and uvicorn cost a request on this machine, so the
``ingest`` scenario can give fleetstream's one-reading edge as a share of it.

    uvicorn bench.baselines.bare_fastapi:app --host 127.0.0.1 --port P --no-access-log
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import FastAPI, status
from pydantic import BaseModel

app = FastAPI()


class Reading(BaseModel):
    device_id: str
    timestamp: datetime
    sensors: dict[str, dict[str, Any]]


@app.post("/v1/readings", status_code=status.HTTP_202_ACCEPTED)
async def post_reading(reading: Reading) -> dict[str, Any]:
    return {"accepted": 1, "device_id": reading.device_id}
