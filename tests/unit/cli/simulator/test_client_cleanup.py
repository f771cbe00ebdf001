"""A simulated device whose run ends mid-connect closes its connection (a dropped one surfaced
as an unclosed-stream warning in the hostile-fleet test)."""

from __future__ import annotations

import asyncio

from cli.simulator.mqtt_client import Endpoint, MqttClient


async def test_a_connect_cancelled_while_waiting_for_the_connack_closes_the_connection() -> None:
    accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def silent_broker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put((reader, writer))  # takes the CONNECT, never answers it

    server = await asyncio.start_server(silent_broker, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        client = MqttClient(Endpoint("127.0.0.1", port), "esp32-sim-1", "token")
        connecting = asyncio.create_task(client.connect())
        reader, writer = await asyncio.wait_for(accepted.get(), 5)
        await asyncio.wait_for(reader.read(1), 5)  # the CONNECT arrived: the client waits
        connecting.cancel()
        await asyncio.gather(connecting, return_exceptions=True)
        await asyncio.wait_for(reader.read(), 5)  # returns at EOF: only if the client closed
        assert connecting.cancelled()
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
