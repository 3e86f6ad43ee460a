"""Running the JavaScript clients LibreChat ships (`tests/js/*.mjs`, packages from
`tests/js/package.json`, installed by `scripts/test.sh` when npm is present) from the tests."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

JS = Path(__file__).resolve().parent / "js"
NODE = shutil.which("node")


def needs(package: str) -> pytest.MarkDecorator:
    """Skip unless Node and `package` (e.g. "@langchain/openai") are installed, and say how to get them."""
    return pytest.mark.skipif(
        NODE is None or not (JS / "node_modules" / package).is_dir(),
        reason="Node and tests/js/node_modules are needed: npm ci --prefix tests/js (scripts/test.sh does it)",
    )


async def run_script(script: str, *args: str, timeout: float = 60) -> dict[str, Any]:
    """Run `tests/js/<script>` with `args`; its result is the JSON of its last line of output."""
    assert NODE is not None
    process = await asyncio.create_subprocess_exec(
        NODE, str(JS / script), *args, cwd=JS, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result
