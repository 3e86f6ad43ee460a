"""Image tokens: OpenAI's tile rule, with the size read from the image's own header."""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from typing import Any

LOW_DETAIL_IMAGE_TOKENS = 85
IMAGE_TILE_TOKENS = 170
UNKNOWN_IMAGE_TOKENS = 765
# Base64 characters decoded to find an image's size: 64 KiB, room for a JPEG's EXIF block.
IMAGE_HEADER_B64_CHARS = 87_384


def image_part_tokens(image: Any, unknown_image: int) -> int:
    """An `image_url` value (a URL string, or `{"url", "detail"}`)."""
    if isinstance(image, Mapping):
        url, detail = image.get("url"), image.get("detail") or "auto"
    else:
        url, detail = image, "auto"
    if detail == "low":
        return LOW_DETAIL_IMAGE_TOKENS
    size = image_size_from_data_url(url) if isinstance(url, str) else None
    if size is None:
        return unknown_image
    return image_tokens(size[0], size[1], detail)


def image_tokens(width: int, height: int, detail: str = "auto") -> int:
    """OpenAI's tile rule: fit in 2048x2048, shortest side down to 768, 170 per 512px tile + 85."""
    if detail == "low" or width <= 0 or height <= 0:
        return LOW_DETAIL_IMAGE_TOKENS
    w, h = float(width), float(height)
    if max(w, h) > 2048:
        scale = 2048 / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > 768:
        scale = 768 / min(w, h)
        w, h = w * scale, h * scale
    tiles = math.ceil(round(w) / 512) * math.ceil(round(h) / 512)
    return LOW_DETAIL_IMAGE_TOKENS + IMAGE_TILE_TOKENS * tiles


def image_size_from_data_url(url: str) -> tuple[int, int] | None:
    """(width, height) from the header of a base64 `data:` URL image, None when unknown."""
    if not url.startswith("data:"):
        return None
    comma = url.find(",", 0, 256)
    if comma < 0 or not url[:comma].endswith(";base64"):
        return None
    chunk = url[comma + 1 : comma + 1 + IMAGE_HEADER_B64_CHARS]
    try:
        data = base64.b64decode(chunk[: len(chunk) // 4 * 4])
    except (binascii.Error, ValueError):
        return None
    size = image_size(data)
    return size if size is not None and size[0] > 0 and size[1] > 0 else None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the start of a PNG, GIF, WebP or JPEG file, None when unknown."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8X":
            return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
        if chunk == b"VP8 ":
            width, height = int.from_bytes(data[26:28], "little"), int.from_bytes(data[28:30], "little")
            return width & 0x3FFF, height & 0x3FFF
        if chunk == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            return int.from_bytes(data[i + 7 : i + 9], "big"), int.from_bytes(data[i + 5 : i + 7], "big")
        elif 0xD0 <= marker <= 0xD9 or marker == 0x01:  # markers without a length
            i += 2
        else:
            i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None
