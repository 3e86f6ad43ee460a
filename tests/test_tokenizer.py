"""The vendored tiktoken encodings: right token ids, exactly tiktoken's definitions, no network."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tiktoken_ext import openai_public

from metering import tokenizer
from metering.tokenizer import EncodingSpec, get_encoding, parse_ranks, read_verified

SAMPLES = [
    "hello world",
    "Hello, world!",
    "Olá, tudo bem? Quantos tokens restam este mês?",
    "def f(x):\n    return x ** 2  # square\n\n\n",
    "1234567890 3.14159 -42",
    "日本語のテキストと emoji 🚀🔥",
    "   leading and trailing spaces   ",
    "<|endoftext|> is just text here",
]


def test_cl100k_encodes_hello_world_to_published_ids() -> None:
    assert get_encoding("cl100k_base").encode_ordinary("hello world") == [15339, 1917]


def test_o200k_encodes_hello_world_to_published_ids() -> None:
    enc = get_encoding("o200k_base")
    assert enc.encode_ordinary("hello world") == [24912, 2375]
    assert enc.encode_ordinary("Hello, world!") == [13225, 11, 2375, 0]


@pytest.mark.parametrize("name", ["cl100k_base", "o200k_base"])
def test_encodings_agree_with_an_independent_bpe_implementation(name: str) -> None:
    bindings = pytest.importorskip("bpe_openai._bindings")
    reference = bindings.tokenizer_for_encoding(name)
    enc = get_encoding(name)
    for text in SAMPLES:
        assert enc.encode_ordinary(text) == reference.encode(text), text


@pytest.mark.parametrize("name", ["cl100k_base", "o200k_base"])
def test_regex_and_special_tokens_are_tiktokens_own(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Build tiktoken's own definition without its download: only the rank file is stubbed out.
    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", lambda *args, **kwargs: {})
    definition = openai_public.ENCODING_CONSTRUCTORS[name]()
    enc = get_encoding(name)
    assert enc._pat_str == definition["pat_str"]
    assert enc._special_tokens == definition["special_tokens"]


@pytest.mark.parametrize(("name", "n_vocab"), [("cl100k_base", 100_277), ("o200k_base", 200_019)])
def test_vocabulary_has_the_published_size(name: str, n_vocab: int) -> None:
    assert get_encoding(name).n_vocab == n_vocab


def test_encoding_is_built_once_and_cached() -> None:
    assert get_encoding("o200k_base") is get_encoding("o200k_base")


def test_preload_builds_every_encoding_so_no_request_reads_a_rank_file(monkeypatch: pytest.MonkeyPatch) -> None:
    get_encoding.cache_clear()
    tokenizer.preload()

    def no_more_reading(spec: EncodingSpec) -> bytes:
        raise AssertionError(f"{spec.filename} read after preload")

    monkeypatch.setattr(tokenizer, "read_verified", no_more_reading)
    assert get_encoding("cl100k_base").encode_ordinary("Hello, world!") == [9906, 11, 1917, 0]
    assert get_encoding("o200k_base").encode_ordinary("Hello, world!") == [13225, 11, 2375, 0]


def test_the_python_copy_of_the_ranks_is_released() -> None:
    # tiktoken's Rust core has its own copy; the Python dict (~200,000 entries) only served pickling.
    get_encoding.cache_clear()
    assert len(get_encoding("o200k_base")._mergeable_ranks) == 0
    assert get_encoding("o200k_base").encode_ordinary("olá, mundo") == get_encoding("o200k_base").encode("olá, mundo")


def test_unknown_encoding_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown encoding"):
        get_encoding("p50k_base")


def test_rank_file_with_the_wrong_hash_is_refused() -> None:
    genuine = tokenizer.SPECS["cl100k_base"]
    tampered = EncodingSpec(genuine.filename, "0" * 64, genuine.pat_str, genuine.special_tokens)
    with pytest.raises(ValueError, match="does not match"):
        read_verified(tampered)


def test_malformed_rank_line_is_refused() -> None:
    with pytest.raises(ValueError, match="malformed line"):
        parse_ranks(b"IQ== 0\nnot-a-rank-line\n", "test")


def test_encodings_load_with_the_network_blocked(tmp_path: Path) -> None:
    cache_dir = tmp_path / "tiktoken-cache"
    cache_dir.mkdir()
    script = textwrap.dedent(
        """
        import socket
        import sys

        def refuse(*args, **kwargs):
            raise OSError("network access attempted")

        socket.socket.connect = refuse
        socket.socket.connect_ex = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse

        from metering.tokenizer import get_encoding

        assert get_encoding("cl100k_base").encode_ordinary("hello world") == [15339, 1917]
        assert get_encoding("o200k_base").encode_ordinary("hello world") == [24912, 2375]
        assert "requests" not in sys.modules, "tiktoken's download path was imported"
        print("ok")
        """
    )
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(cache_dir), "DATA_GYM_CACHE_DIR": str(cache_dir)}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    assert list(cache_dir.iterdir()) == []
