"""Instrumentation for the gateway under `bench.run`, loaded by Python at start-up. Never for production.

    PYTHONPATH=$PWD/bench/probe SOLARIS_PROBE_STEPS=/tmp/steps.txt \\
        .venv/bin/python -m bench.run --quick --no-litellm --skip-ledger --skip-hol --only gateway
    PYTHONPATH=$PWD/bench/probe SOLARIS_PROBE_NO_WRITER=1 .venv/bin/python -m bench.run --quick ...

`SOLARIS_PROBE_STEPS=FILE`: once a second, the median time of each step of the request path (read,
identify, estimate, admit, upstream call, settle + record, and forward-to-the-end) is appended to
FILE, with the count. The load phases of the run follow each other, so the seconds at about
1,000 requests each are the concurrency-1 whole answers.
`SOLARIS_PROBE_NO_WRITER=1`: the ledger writer does nothing (usage events wait in Redis), to see
what writing them costs the serving process.

Only `solaris-proxy` processes are touched; every other process of the run starts as usual.
"""

from __future__ import annotations

import os
import sys

if os.path.basename(sys.argv[0] if sys.argv else "") == "solaris-proxy":
    if os.environ.get("SOLARIS_PROBE_STEPS"):
        import collections
        import statistics
        import threading
        import time
        from typing import Any

        import proxy.handlers as handlers
        import proxy.relay as relay
        import proxy.upstream as upstream

        _path = os.environ["SOLARIS_PROBE_STEPS"]
        _samples: dict[str, list[float]] = collections.defaultdict(list)

        def _timed(module: Any, name: str) -> None:
            original = getattr(module, name)

            async def timed(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await original(*args, **kwargs)
                finally:
                    _samples[name].append(time.perf_counter() - started)

            setattr(module, name, timed)

        # The steps as the handlers and the relay call them (they import them by name).
        for _module, _name in ((handlers, "read_json_body"), (handlers, "identify_caller"), (handlers, "estimate"),
                               (handlers, "admit"), (upstream, "send"), (relay, "finish"),
                               (handlers, "relay")):  # fmt: skip
            _timed(_module, _name)

        def _report() -> None:
            while True:
                time.sleep(1)
                window = {name: values[:] for name, values in _samples.items()}
                _samples.clear()
                if window:
                    with open(_path, "a") as out:
                        steps = " ".join(
                            f"{name}={statistics.median(values) * 1e6:.0f}us(n={len(values)})"
                            for name, values in window.items()
                        )
                        out.write(f"{time.strftime('%H:%M:%S')} pid {os.getpid()} {steps}\n")

        threading.Thread(target=_report, name="probe-steps", daemon=True).start()

    if os.environ.get("SOLARIS_PROBE_NO_WRITER"):
        import asyncio

        from metering import ledger_writer

        async def _idle(self: ledger_writer.LedgerWriter, stop: asyncio.Event | None = None) -> None:
            await asyncio.Event().wait()

        ledger_writer.LedgerWriter.run = _idle  # type: ignore[method-assign]
