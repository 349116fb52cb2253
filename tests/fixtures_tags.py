"""Real Broadcast Wave files with metadata chunks, written byte by byte (soundfile writes no bext/iXML).

``write_bwf(path, y, sr, description=..., originator=..., ixml=..., info={...}, extra=[(id, bytes)])`` writes a
16-bit PCM WAV with the ``fmt `` and ``data`` chunks soundfile makes, plus a ``bext`` chunk (Description 256 bytes,
Originator 32, the rest of the fixed 602-byte part zeroed), an ``iXML`` chunk and a ``LIST``/``INFO`` chunk, each
only when given, in front of the ``data`` chunk as recorders write them.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np


def chunk(cid: bytes, data: bytes) -> bytes:
    """One RIFF chunk (padded to an even size)."""
    return cid + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) % 2 else b"")


def bext(description: str | bytes = b"", originator: str | bytes = b"") -> bytes:
    """A ``bext`` chunk body (version 1 layout, 602 bytes + empty coding history)."""
    d = description.encode("utf-8") if isinstance(description, str) else description
    o = originator.encode("utf-8") if isinstance(originator, str) else originator
    return d[:256].ljust(256, b"\x00") + o[:32].ljust(32, b"\x00") + b"\x00" * (602 - 288)


def ucs_ixml(**user: str) -> bytes:
    """An iXML document with a ``USER`` block (UCS fields as Soundminer / BaseHead write them)."""
    fields = "".join(f"<{k.upper()}>{v}</{k.upper()}>" for k, v in user.items())
    return f'<?xml version="1.0" encoding="UTF-8"?><BWFXML><IXML_VERSION>2.10</IXML_VERSION><USER>{fields}</USER></BWFXML>'.encode()


def info_list(**tags: str) -> bytes:
    """A ``LIST`` body of type ``INFO`` with the given 4-letter tags (``INAM="Title"``)."""
    body = b"INFO"
    for k, v in tags.items():
        body += chunk(k.encode("ascii"), v.encode("utf-8") + b"\x00")
    return body


def write_bwf(path: str | Path, y: np.ndarray, sr: int, description: str | bytes | None = None,
              originator: str | bytes = b"", ixml: bytes | None = None, info: dict[str, str] | None = None,
              extra: list[tuple[bytes, bytes]] | None = None) -> Path:
    """Write ``y`` (float, mono or ``(n, channels)``) as a 16-bit WAV with the metadata chunks given."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype="PCM_16")
    raw = buf.getvalue()
    assert raw[:4] == b"RIFF" and raw[8:12] == b"WAVE"
    pos, chunks = 12, []
    while pos + 8 <= len(raw):
        cid, size = raw[pos:pos + 4], struct.unpack("<I", raw[pos + 4:pos + 8])[0]
        chunks.append((cid, raw[pos + 8:pos + 8 + size]))
        pos += 8 + size + (size & 1)
    meta = b""
    if description is not None:
        meta += chunk(b"bext", bext(description, originator))
    if ixml is not None:
        meta += chunk(b"iXML", ixml)
    if info:
        meta += chunk(b"LIST", info_list(**info))
    for cid, data in extra or []:
        meta += chunk(cid, data)
    body = b"WAVE"
    for cid, data in chunks:
        if cid == b"data":
            body += meta
        body += chunk(cid, data)
    path = Path(path)
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path
