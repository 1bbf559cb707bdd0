"""The simulator's HTTP/1.1 plumbing: requests in (incl. multipart forms), responses out
(fixed length, or chunked for event streams), keep-alive between them."""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body or b"null")

    def form(self) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
        """Fields and files of a multipart/form-data body (the last part of each name)."""
        values: dict[str, str] = {}
        files: dict[str, tuple[str, bytes]] = {}
        for name, filename, content in self.parts():
            if filename is None:
                values[name] = content.decode("utf-8", "replace")
            else:
                files[name] = (filename, content)
        return values, files

    def parts(self) -> list[tuple[str, str | None, bytes]]:
        """Every part of a multipart/form-data body in order, as (name, filename or None for
        a field, content): repeated names (`image[]`) each keep their part."""
        match = re.search(r'boundary="?([^";]+)"?', self.headers.get("content-type", ""))
        if not match:
            return []
        parts = []
        for part in self.body.split(b"--" + match.group(1).encode())[1:]:
            if part.startswith(b"--"):
                break
            # Only the delimiters' own CRLFs go: a file may end in CR or LF bytes of its own.
            part = part.removeprefix(b"\r\n").removesuffix(b"\r\n")
            head, _, content = part.partition(b"\r\n\r\n")
            disposition = head.decode("utf-8", "replace")
            name = re.search(r'name="([^"]*)"', disposition)
            filename = re.search(r'filename="([^"]*)"', disposition)
            if name:
                parts.append((name.group(1), filename.group(1) if filename else None, content))
        return parts


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    stream: object = None  # async iterator of bytes (sent chunked), for SSE
    abort: bool = False  # close the connection without answering
    # A websocket: after the 101 handshake, `upgrade(reader, writer)` owns the connection.
    upgrade: object = None

    @classmethod
    def of_json(cls, data, status: int = 200, **headers) -> Response:
        return cls(
            status, json.dumps(data).encode(), {"content-type": "application/json", **headers}
        )


REASONS = {
    200: "OK",
    302: "Found",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def error_response(status: int, message: str, kind: str = "invalid_request_error") -> Response:
    return Response.of_json({"error": {"message": message, "type": kind}}, status)


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    line = await reader.readline()
    if not line:
        return None
    method, target, _version = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while (raw := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while size := int((await reader.readline()).split(b";")[0], 16):
            body += await reader.readexactly(size)
            await reader.readline()
        await reader.readline()
    else:
        body = await reader.readexactly(int(headers.get("content-length") or 0))
    parts = urlsplit(target)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    return Request(method.upper(), parts.path, query, headers, body)


async def write_response(writer: asyncio.StreamWriter, response: Response) -> bool:
    """Send the response; False when the connection must close afterwards."""
    head = [f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Status')}"]
    headers = {"x-request-id": f"req_{time.time_ns():x}", **response.headers}
    if response.stream is not None:
        headers["transfer-encoding"] = "chunked"
    else:
        headers["content-length"] = str(len(response.body))
    head += [f"{name}: {value}" for name, value in headers.items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
    if response.stream is None:
        writer.write(response.body)
        await writer.drain()
        return True
    async for piece in response.stream:
        if piece is None:  # the handler cuts the stream here
            writer.transport.abort()
            return False
        writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        await writer.drain()
    writer.write(b"0\r\n\r\n")
    await writer.drain()
    return True
