"""The server side of RFC 6455, as much as the simulator needs: the opening handshake's answer,
unmasked text frames out, and the client's masked frames in (close answered, ping ponged,
anything else read and ignored). Dependency-free, like the rest of the simulator; the adapter
talks to it with the `websockets` library, so a framing mistake here fails the tests."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct

from studio.providers.sim.http import Request

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA


def is_upgrade(request: Request) -> bool:
    return (
        request.headers.get("upgrade", "").lower() == "websocket"
        and "upgrade" in request.headers.get("connection", "").lower()
        and bool(request.headers.get("sec-websocket-key"))
    )


def handshake(request: Request) -> bytes:
    """The 101 answer to the client's opening handshake (no Content-Length on a 1xx)."""
    digest = hashlib.sha1((request.headers["sec-websocket-key"] + GUID).encode()).digest()
    accept = base64.b64encode(digest).decode()
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
    ).encode("latin-1")


def frame(opcode: int, payload: bytes = b"") -> bytes:
    """One final, unmasked frame (a server never masks)."""
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return head + payload


async def send_text(writer: asyncio.StreamWriter, text: str) -> None:
    writer.write(frame(TEXT, text.encode()))
    await writer.drain()


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The client's next frame as (opcode, unmasked payload)."""
    first, second = await reader.readexactly(2)
    size = second & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", await reader.readexactly(2))
    elif size == 127:
        (size,) = struct.unpack("!Q", await reader.readexactly(8))
    mask = await reader.readexactly(4) if second & 0x80 else b"\0\0\0\0"
    payload = await reader.readexactly(size)
    return first & 0x0F, bytes(byte ^ mask[n % 4] for n, byte in enumerate(payload))


async def serve_client_frames(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer pings and a close until the client closes or goes away."""
    while True:
        opcode, payload = await read_frame(reader)
        if opcode == PING:
            writer.write(frame(PONG, payload))
            await writer.drain()
        elif opcode == CLOSE:
            writer.write(frame(CLOSE, payload[:2]))
            await writer.drain()
            return


async def close(writer: asyncio.StreamWriter, code: int = 1000) -> None:
    writer.write(frame(CLOSE, struct.pack("!H", code)))
    await writer.drain()
