"""pycrdt-websocket's own server with its defaults, on the host and port given:

    python bench/peers/pycrdt_websocket_server.py HOST PORT

Its ``WebsocketServer()`` (rooms ready at once, a room dropped when its last client leaves, no
store) as its ``ASGIServer`` under uvicorn, uvicorn's defaults included, as the project's
documentation shows it. Prints one line "ready HOST PORT" once listening; uvicorn stops on
SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Final

import uvicorn
from pycrdt.websocket import ASGIServer, WebsocketServer

LOOPBACK: Final = ("127.0.0.1", "::1", "localhost")


async def serve(host: str, port: int) -> None:
    websocket_server = WebsocketServer()
    server = uvicorn.Server(uvicorn.Config(ASGIServer(websocket_server), host=host, port=port))

    async def announce() -> None:
        # Polled: uvicorn offers a flag, not an event, for "listening".
        while not server.started:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        print(f"ready {host} {port}", flush=True)

    async with websocket_server:
        announcing = asyncio.create_task(announce())
        try:
            await server.serve()
        finally:
            announcing.cancel()


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in LOOPBACK or not argv[1].isdigit():
        print(
            "usage: pycrdt_websocket_server.py HOST PORT  (HOST: 127.0.0.1, ::1 or localhost)",
            file=sys.stderr,
        )
        return 2
    asyncio.run(serve(argv[0], int(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
