"""A minimal WebSocket reader (RFC 6455) for ComfyUI's /ws, loopback only, for host tests that watch
progress and previews (no test functions here; no third-party client needed).

Messages come back as ("text", dict) for ComfyUI's JSON events and ("binary", event, payload) for its
binary ones (event 1: a preview image, payload = 4-byte image type + JPEG/PNG bytes).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time


class WebSocketReader:
    def __init__(self, host: str, port: int, client_id: str, timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET /ws?clientId={client_id} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(request.encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("the server closed the WebSocket handshake")
            self.buffer += chunk
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"WebSocket upgrade refused: {head[:200]!r}")

    def _read(self, count: int) -> bytes:
        while len(self.buffer) < count:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the WebSocket")
            self.buffer += chunk
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)  # client frames are masked
        header = bytes([0x80 | opcode, 0x80 | len(payload)]) if len(payload) < 126 else None
        if header is None:
            raise ValueError("control payloads are short")
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def receive(self):
        """The next data message; answers pings, joins fragments."""
        message, first_opcode = b"", None
        while True:
            first, second = self._read(2)
            final, opcode = first & 0x80, first & 0x0F
            length = second & 0x7F
            if length == 126:
                length = struct.unpack(">H", self._read(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", self._read(8))[0]
            payload = self._read(length)  # server frames are unmasked
            if opcode == 0x9:
                self._send(0xA, payload)
                continue
            if opcode == 0x8:
                raise ConnectionError("the server closed the WebSocket")
            if opcode in (0x1, 0x2):
                first_opcode, message = opcode, payload
            elif opcode == 0x0:
                message += payload
            if final and first_opcode is not None:
                if first_opcode == 0x1:
                    return ("text", json.loads(message))
                return ("binary", struct.unpack(">I", message[:4])[0], message[4:])

    def until(self, done, timeout: float):
        """Messages until `done(message)` is true (included) or `timeout` seconds pass."""
        deadline = time.monotonic() + timeout
        messages = []
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                message = self.receive()
            except socket.timeout:
                break
            messages.append(message)
            if done(message):
                break
        return messages

    def close(self) -> None:
        try:
            self._send(0x8, b"")
        except OSError:
            pass
        self.sock.close()
