"""Profile the gateway under load: `.venv/bin/python -m bench.profile [--seconds 15] [--stream]`.

Starts the fake upstream, embedded Redis and Postgres and `solaris-proxy serve` as bench.run does,
drives whole (or streamed) chat completions at concurrency 32 with wrk (or bench.loadgen), and
samples the gateway with py-spy (`pip install py-spy`). Prints where the time goes: leaf frames
grouped by package, the hottest leaf functions, and our own functions by inclusive time. The raw
collapsed stacks are kept (`--out`) for a flame graph (`flamegraph.pl` or speedscope.app).
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import orjson

from bench import servers
from bench.run import SMALL, Load, Target
from bench.servers import BENCH_USER, SERVICE_KEY, Cores

OURS = frozenset({"proxy", "metering", "solaris", "admin", "runtime"})
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def package_of(path: str) -> str:
    """py-spy shortens paths to the import path (`redis/asyncio/connection.py`, `proxy/forward.py`)."""
    head, _, rest = path.partition("/")
    if head in OURS:
        return f"ours: {path}"
    return head if rest else f"{path} (stdlib/other)"


def is_ours(path: str) -> bool:
    return path.partition("/")[0] in OURS


def short(frame: str) -> str:
    match = FRAME.match(frame)
    return f"{match['func']} ({match['file']})" if match else frame


def analyse(raw: Path, top: int) -> str:
    leaf_pkg: collections.Counter[str] = collections.Counter()
    leaf_fn: collections.Counter[str] = collections.Counter()
    ours_incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        leaf = frames[-1]
        match = FRAME.match(leaf)
        leaf_pkg[package_of(match["file"] if match else leaf)] += count
        leaf_fn[short(leaf)] += count
        seen = set()
        for frame in frames:
            match = FRAME.match(frame)
            if match and is_ours(match["file"]):
                name = short(frame)
                if name not in seen:
                    seen.add(name)
                    ours_incl[name] += count
    lines = [f"{total} samples"]
    for title, counter in (("self time by module", leaf_pkg), ("hottest leaf functions", leaf_fn),
                           ("our functions, inclusive", ours_incl)):  # fmt: skip
        lines.append(f"\n{title}:")
        for name, count in counter.most_common(top):
            lines.append(f"  {100 * count / max(total, 1):5.1f}%  {name}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--stream", action="store_true", help="profile streamed answers instead")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--native", action="store_true", help="also sample C frames (GC, uvloop); pauses the process per sample"
    )
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "solaris-profile.txt")
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(servers.PYTHON).parent / "py-spy")
    cores = Cores.choose(True)
    cores.pin_self_to_aux()
    workdir = Path(tempfile.mkdtemp(prefix="solaris-profile-"))
    started, engines = servers.start_gateway_alone(workdir, cores)
    gateway = started[-1]
    try:
        target = Target("gateway", gateway, gateway.port,
                        {"Authorization": f"Bearer {SERVICE_KEY}", "X-Solaris-User": BENCH_USER})  # fmt: skip
        load = Load(workdir, use_wrk=True)
        body = orjson.dumps({**SMALL, "stream": True} if args.stream else SMALL)
        load.point(target, body, args.concurrency, 2, 0, stream=args.stream)  # warm up
        spy = subprocess.Popen(
            [py_spy, "record", "--pid", str(gateway.process.pid), "--duration", str(args.seconds), "--rate", "250",
             "--format", "raw", "--output", str(args.out), "--native" if args.native else "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(0.5)
        result = load.point(target, body, args.concurrency, args.seconds + 1, 0, stream=args.stream)
        _, err = spy.communicate(timeout=args.seconds + 60)
        if spy.returncode:
            raise SystemExit(f"py-spy failed: {err}")
        print(f"load while sampling: {result['rps']:.0f} req/s, p50 {result['p50_ms']:.2f} ms")
        print(analyse(args.out, args.top))
        print(f"\nraw stacks: {args.out}")
    finally:
        servers.stop_all(started, engines, workdir)


if __name__ == "__main__":
    main()
