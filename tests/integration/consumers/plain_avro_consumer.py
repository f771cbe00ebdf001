"""A consumer as an analytics team would write it from the README: confluent-kafka + fastavro.

It imports nothing from fleetstream (the test runs it with ``python -I`` from another folder)
and is the README's "plain confluent-kafka Python consumer" example, plus arguments. It reads
a topic from the beginning to its end, fetches each writer schema by the id in the record's
first 5 bytes from the registry, and prints every record as one JSON line:
``{"partition", "offset", "key", "value"}``.

    python plain_avro_consumer.py --bootstrap 127.0.0.1:9092 --topic fleet.readings.v1 \
        --registry http://127.0.0.1:8081/apis/ccompat/v7
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import urllib.request
import uuid
from typing import Any

import fastavro
from confluent_kafka import Consumer, TopicPartition

_schemas: dict[int, Any] = {}


def writer_schema(registry: str, schema_id: int) -> Any:
    if schema_id not in _schemas:
        url = f"{registry}/schemas/ids/{schema_id}"
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - http(s) URL
            text = json.load(response)["schema"]
        _schemas[schema_id] = fastavro.parse_schema(json.loads(text))
    return _schemas[schema_id]


def decode(registry: str, value: bytes) -> Any:
    if value[:1] != b"\x00":
        raise ValueError("not Confluent-framed Avro")
    schema_id = int.from_bytes(value[1:5], "big")
    return fastavro.schemaless_reader(io.BytesIO(value[5:]), writer_schema(registry, schema_id))


def plain(value: Any) -> Any:
    """Avro datum -> JSON-friendly (timestamps as ISO text, UUIDs as text)."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--registry", required=True)
    args = parser.parse_args()

    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": f"plain-avro-{uuid.uuid4()}",
            "enable.auto.commit": False,
        }
    )
    partitions = consumer.list_topics(args.topic, timeout=10).topics[args.topic].partitions
    ends = {p: consumer.get_watermark_offsets(TopicPartition(args.topic, p))[1] for p in partitions}
    consumer.assign([TopicPartition(args.topic, p, 0) for p in partitions])  # from the start
    remaining = {p for p, end in ends.items() if end > 0}
    while remaining:
        message = consumer.poll(10.0)
        if message is None:
            print("timed out before the end of the topic", file=sys.stderr)
            return 1
        if message.error():
            print(f"error: {message.error()}", file=sys.stderr)
            return 1
        key, value, offset = message.key(), message.value(), message.offset() or 0
        record = {
            "partition": message.partition(),
            "offset": offset,
            "key": None if key is None else key.decode(),
            "value": None if value is None else plain(decode(args.registry, value)),
        }
        print(json.dumps(record))
        if offset + 1 >= ends[message.partition()]:
            remaining.discard(message.partition())
    consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
