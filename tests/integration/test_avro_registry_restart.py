"""The schema registry keeps its schemas and ids across a restart (H2 files in .stack/apicurio).

Disruptive: stops and starts the stack's registry. A worker that is already running does not
notice (it looked its schema id up at start); one that starts later finds the same id.
"""

from __future__ import annotations

import pytest

from cli.stack import manager
from connectors.schema_registry import client_for, register_contracts, subject_for
from schemas.avro_codec import schema_json
from schemas.settings import Settings


@pytest.mark.disruptive
def test_registry_restart_keeps_subjects_ids_and_levels(pipeline: Settings) -> None:
    before = register_contracts(pipeline)
    manager.down(pipeline, ["apicurio"], progress=print)
    manager.up(pipeline, ["apicurio"], progress=print)
    client = client_for(pipeline)
    subject = subject_for(pipeline.topics.readings)
    assert client.lookup(subject, schema_json("readings")) == before[subject]
    assert client.compatibility(subject) == "BACKWARD"
    assert register_contracts(pipeline) == before
