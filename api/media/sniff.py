"""What a file is, from its first bytes (magic numbers), never from its name or a header.

:func:`peek` takes the first bytes of a stream and gives back a stream of all of them, so a
route can decide on the type before the bytes go to the blob store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

SNIFF_BYTES = 16


@dataclass(frozen=True)
class FileType:
    content_type: str
    ext: str


OCTET_STREAM = FileType("application/octet-stream", "bin")


def image_type(head: bytes) -> FileType | None:
    """JPEG, PNG, GIF, WebP, BMP, TIFF, HEIC or AVIF; None for anything else."""
    if head.startswith(b"\xff\xd8\xff"):
        return FileType("image/jpeg", "jpg")
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return FileType("image/png", "png")
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return FileType("image/gif", "gif")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return FileType("image/webp", "webp")
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return FileType("image/tiff", "tiff")
    if head[:2] == b"BM" and len(head) >= 14:
        return FileType("image/bmp", "bmp")
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"mif1", b"msf1"):
            return FileType("image/heic", "heic")
        if brand in (b"avif", b"avis"):
            return FileType("image/avif", "avif")
    return None


_CODEC_TYPES = {
    "opus": FileType("audio/ogg", "ogg"),
    "vorbis": FileType("audio/ogg", "ogg"),
    "flac": FileType("audio/flac", "flac"),
    "mp3": FileType("audio/mpeg", "mp3"),
    "aac": FileType("audio/aac", "aac"),
    "wav": FileType("audio/wav", "wav"),
}


def audio_type(head: bytes, codec: str) -> FileType:
    """The container the bytes show (Ogg, FLAC, WAV, MP3, MP4, WebM); else what the codec
    suggests; else ``application/octet-stream`` (raw PCM, unknown codecs: stored as sent)."""
    if head.startswith(b"OggS"):
        return FileType("audio/ogg", "ogg")
    if head.startswith(b"fLaC"):
        return FileType("audio/flac", "flac")
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return FileType("audio/wav", "wav")
    if head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return FileType("audio/mpeg", "mp3")
    if head[4:8] == b"ftyp":
        return FileType("audio/mp4", "m4a")
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return FileType("audio/webm", "webm")
    return _CODEC_TYPES.get(codec.lower(), OCTET_STREAM)


async def peek(
    chunks: AsyncIterator[bytes], size: int = SNIFF_BYTES
) -> tuple[bytes, AsyncIterator[bytes]]:
    """The first ``size`` bytes of ``chunks`` (fewer if it is shorter) and a stream of every
    byte, those included."""
    buffered: list[bytes] = []
    have = 0
    async for chunk in chunks:
        buffered.append(chunk)
        have += len(chunk)
        if have >= size:
            break
    head = b"".join(buffered)[:size]

    async def everything() -> AsyncIterator[bytes]:
        for chunk in buffered:
            yield chunk
        async for chunk in chunks:
            yield chunk

    return head, everything()
