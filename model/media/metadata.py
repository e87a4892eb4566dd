"""Text tags (a ComfyUI prompt and workflow, or the CLI's settings) stored inside written videos.

Each format keeps them where ComfyUI's own save nodes and its editor put and look for them, so a
file dropped onto the editor restores the graph that made it:

- mp4, webm: container metadata tags (MP4 with `movflags=use_metadata_tags`), as core SaveVideo;
- animated WebP: an EXIF chunk whose Model tag (0x0110) holds `prompt:<json>` and the tags below it
  (0x010F, 0x010E, ...) hold `<key>:<json>`, as core SaveAnimatedWEBP (the editor splits at the ':');
- PNG: one tEXt chunk per key (iTXt when the text is not Latin-1), as core SaveImage;
- GIF: one comment extension holding a JSON object of the tags. ComfyUI's editor reads no GIF
  metadata at all: the graph is kept for other tools, but only mp4, webm, webp and PNG reopen in it.

Tags are `{key: text}`; ComfyUI's values are JSON texts (`json.dumps(prompt)`), stored unchanged.
WebP, PNG and GIF files are written by FFmpeg first and get their tags by adding one chunk or
block to the finished file (`embed`), before it is renamed into place.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from ..errors import InputError

CONTAINER_TAGGED = {"mp4", "webm"}  # FFmpeg muxers that store tags themselves (VideoFormat.container)
EMBEDDED = {"webp", "gif", "image2"}  # tags added to the finished file (image2: PNG frames)

_EXIF_FIRST_TAG = 0x0110  # EXIF Model: ComfyUI puts "prompt:..." here, the other keys below it
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_tags(tags) -> dict[str, str] | None:
    """`tags` as a plain dict of texts (None or empty: no tags); InputError for anything else."""
    if not tags:
        return None
    if not isinstance(tags, dict):
        raise InputError("metadata", f"expected a dict of texts, got {type(tags).__name__}")
    for key, value in tags.items():
        if not isinstance(key, str) or not key or ":" in key or not key.isprintable():
            raise InputError("metadata", f"a key must be a non-empty printable text without ':', got {key!r}")
        if not isinstance(value, str):
            raise InputError("metadata", f"the value of {key!r} must be text (JSON), got {type(value).__name__}")
    return dict(tags)


def container_options(container: str, tags: dict[str, str] | None) -> dict[str, str]:
    """Muxer options needed for `tags` to be written (MP4 drops custom tags without this flag)."""
    return {"movflags": "use_metadata_tags"} if tags and container == "mp4" else {}


def set_container_tags(output, tags: dict[str, str] | None) -> None:
    """Put `tags` on an open PyAV output container (mp4, webm) before its header is written."""
    for key, value in (tags or {}).items():
        output.metadata[key] = value


def embed(path: Path, container: str, tags: dict[str, str] | None) -> None:
    """Add `tags` to a finished WebP, GIF or PNG file in place (other containers: nothing to do)."""
    if not tags or container not in EMBEDDED:
        return
    data = Path(path).read_bytes()
    writer = {"webp": _webp_with_exif, "gif": _gif_with_comment, "image2": _png_with_text}[container]
    Path(path).write_bytes(writer(data, tags, path))


# ------------------------------------------------------------------------------------------ WebP

def exif_bytes(tags: dict[str, str]) -> bytes:
    """An EXIF block ("Exif\\0\\0" + TIFF) laid out as ComfyUI's SaveAnimatedWEBP lays it out."""
    from PIL import Image

    exif = Image.Exif()
    ordered = sorted(tags.items(), key=lambda item: item[0] != "prompt")  # prompt first, in the Model tag
    for offset, (key, value) in enumerate(ordered):
        exif[_EXIF_FIRST_TAG - offset] = f"{key}:{value}"
    return exif.tobytes()


def _webp_with_exif(data: bytes, tags: dict[str, str], path) -> bytes:
    """Append an EXIF chunk to a WebP and set VP8X's EXIF flag.

    A simple-format file (one VP8 or VP8L image: what the encoder writes for one frame, or for frames
    that are all alike) first gets the VP8X header that extended files start with. Every chunk before
    the EXIF keeps its even size, which the editor's reader relies on (it does not skip RIFF padding)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise InputError(str(path), "is not a WebP file; cannot add metadata")
    if data[12:16] in (b"VP8 ", b"VP8L"):
        data = _extended_webp(data)
    if data[12:16] != b"VP8X":
        raise InputError(str(path), f"is a WebP file of an unknown layout ({data[12:16]!r}); cannot add metadata")
    payload = exif_bytes(tags)
    chunk = b"EXIF" + struct.pack("<I", len(payload)) + payload + (b"\0" if len(payload) % 2 else b"")
    flags = data[20] | 0x08  # VP8X flags byte: bit 3 = EXIF metadata present
    body = data[12:20] + bytes([flags]) + data[21:] + chunk
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def _extended_webp(data: bytes) -> bytes:
    """A simple-format WebP as the same image behind a VP8X header (no flags yet)."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
    header = b"\0\0\0\0" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"VP8X" + struct.pack("<I", len(header)) + header + data[12:]
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


# ------------------------------------------------------------------------------------------- GIF

def _gif_with_comment(data: bytes, tags: dict[str, str], path) -> bytes:
    """Insert a comment extension after the header and global colour table (GIF89a)."""
    if data[:6] not in (b"GIF89a", b"GIF87a"):
        raise InputError(str(path), "is not a GIF file; cannot add metadata")
    import json

    flags = data[10]
    start = 13 + (3 * 2 ** ((flags & 0x07) + 1) if flags & 0x80 else 0)
    text = json.dumps(tags).encode("ascii")  # ensure_ascii: GIF comments are 7-bit text
    blocks = b"".join(bytes([len(piece)]) + piece for piece in
                      (text[i:i + 255] for i in range(0, len(text), 255)))
    return b"GIF89a" + data[6:start] + b"\x21\xfe" + blocks + b"\x00" + data[start:]


def read_gif_comment(path) -> dict[str, str]:
    """The tags `embed` stored in a GIF (empty when it holds none)."""
    import json

    from PIL import Image

    with Image.open(path) as image:
        comment = image.info.get("comment")
    return json.loads(comment) if comment else {}


# ------------------------------------------------------------------------------------------- PNG

def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_with_text(data: bytes, tags: dict[str, str], path) -> bytes:
    """Insert a tEXt chunk per tag (iTXt for text outside Latin-1) before the first IDAT."""
    if data[:8] != _PNG_SIGNATURE:
        raise InputError(str(path), "is not a PNG file; cannot add metadata")
    chunks = []
    for key, value in tags.items():
        keyword = key.encode("latin-1")
        try:
            chunks.append(_png_chunk(b"tEXt", keyword + b"\0" + value.encode("latin-1")))
        except UnicodeEncodeError:  # keyword, no compression, no language tag, no translated keyword
            chunks.append(_png_chunk(b"iTXt", keyword + b"\0\0\0\0\0" + value.encode("utf-8")))
    position = 8
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        if kind == b"IDAT":
            return data[:position] + b"".join(chunks) + data[position:]
        position += 12 + length
    raise InputError(str(path), "holds no image data (no IDAT chunk); cannot add metadata")


# ---------------------------------------------------------------------------------------- reading

def read_tags(path) -> dict[str, str]:
    """The tags stored in a written file, from the fields ComfyUI's editor reads (GIF: the comment);
    keys as written (Matroska upper-cases them, so mp4/webm keys are lower-cased here)."""
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix in (".mp4", ".webm"):
        import av

        with av.open(str(file)) as container:
            return {key.lower(): value for key, value in container.metadata.items()}
    if suffix == ".gif":
        return read_gif_comment(file)
    from PIL import Image

    with Image.open(file) as image:
        if suffix == ".webp":
            texts = [value for value in image.getexif().values() if isinstance(value, str) and ":" in value]
            return dict(text.split(":", 1) for text in texts)
        return dict(getattr(image, "text", {}))


if __name__ == "__main__":  # python -m model.media.metadata FILE...: print the stored tags
    import json
    import sys

    for name in sys.argv[1:]:
        for key, value in read_tags(name).items():
            try:
                value = json.dumps(json.loads(value), indent=2)
            except ValueError:
                pass
            print(f"{name}: {key}: {value}")
