"""Offline tiktoken encodings.

`tiktoken.get_encoding` downloads its rank files on first use; the gateway must run air-gapped, so
the two encodings it needs are vendored in `metering/encodings/` (see the README there) and built
here. The decompressed files are checked against the same sha256 hashes tiktoken pins, and the
regex and special tokens are copied from `tiktoken_ext/openai_public.py`, so the result is
token-for-token the encoding tiktoken would build. Nothing here touches the network.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

import tiktoken

# A plain path rather than importlib.resources: the latter fails under editable installs (3.11).
ENCODINGS_DIR = Path(__file__).resolve().parent / "encodings"

ENDOFTEXT = "<|endoftext|>"
FIM_PREFIX = "<|fim_prefix|>"
FIM_MIDDLE = "<|fim_middle|>"
FIM_SUFFIX = "<|fim_suffix|>"
ENDOFPROMPT = "<|endofprompt|>"

CL100K_PAT_STR = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)

O200K_PAT_STR = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)


@dataclass(frozen=True)
class EncodingSpec:
    """What it takes to build one encoding: its vendored file, pinned hash, regex, special tokens."""

    filename: str
    sha256: str
    pat_str: str
    special_tokens: dict[str, int]


SPECS: dict[str, EncodingSpec] = {
    "cl100k_base": EncodingSpec(
        filename="cl100k_base.tiktoken.gz",
        sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        pat_str=CL100K_PAT_STR,
        special_tokens={
            ENDOFTEXT: 100257,
            FIM_PREFIX: 100258,
            FIM_MIDDLE: 100259,
            FIM_SUFFIX: 100260,
            ENDOFPROMPT: 100276,
        },
    ),
    "o200k_base": EncodingSpec(
        filename="o200k_base.tiktoken.gz",
        sha256="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        pat_str=O200K_PAT_STR,
        special_tokens={ENDOFTEXT: 199999, ENDOFPROMPT: 200018},
    ),
}


def available_encodings() -> tuple[str, ...]:
    """Names `get_encoding` accepts."""
    return tuple(SPECS)


@functools.cache
def get_encoding(name: str) -> tiktoken.Encoding:
    """The named encoding, built from the vendored rank file (cached; unknown name -> ValueError)."""
    spec = SPECS.get(name)
    if spec is None:
        raise ValueError(f"unknown encoding {name!r}; available: {', '.join(SPECS)}")
    encoding = tiktoken.Encoding(
        name=name,
        pat_str=spec.pat_str,
        mergeable_ranks=parse_ranks(read_verified(spec), spec.filename),
        special_tokens=dict(spec.special_tokens),
    )
    # The Rust core keeps its own copy of the ranks; tiktoken holds on to the Python dict only to
    # pickle the encoding, which we never do. Dropping it frees ~37 MB per process for the two.
    if isinstance(getattr(encoding, "_mergeable_ranks", None), dict):
        encoding._mergeable_ranks = {}
    return encoding


def preload() -> None:
    """Build every vendored encoding now: before the server forks its workers (who then share the
    pages), and so that no request pays for the first use (0.1-0.3 s on the event loop)."""
    for name in SPECS:
        get_encoding(name)


def read_verified(spec: EncodingSpec) -> bytes:
    """The decompressed rank file, refused if its sha256 is not the one tiktoken pins."""
    data = gzip.decompress((ENCODINGS_DIR / spec.filename).read_bytes())
    digest = hashlib.sha256(data).hexdigest()
    if digest != spec.sha256:
        raise ValueError(f"{spec.filename}: sha256 {digest} does not match the pinned {spec.sha256}")
    return data


def parse_ranks(data: bytes, source: str) -> dict[bytes, int]:
    """Parse tiktoken's rank format: one `base64token rank` pair per line."""
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if not line:
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
        except ValueError as exc:
            raise ValueError(f"{source}: malformed line {line[:80]!r}") from exc
    return ranks
