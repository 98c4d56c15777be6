"""Sustained load: N concurrent clients on ``/v1/search`` for 60 s against a real uvicorn server.

    # setup, once, outside CI (optional: without wrk the built-in generator is used)
    apt-get install -y wrk
    # run (ES_URL: an existing node; without it a local node is started for the run)
    ES_URL=http://127.0.0.1:9200 .venv/bin/python bench/load.py
    ES_URL=... .venv/bin/python bench/load.py --clients 64 --duration 60 --items 20000

Loads ``--items`` generated items (``indexer.prediction_generator``) through the product's
writer into a fresh index (deleted afterwards), serves the API with ``cli.serve.serve`` in a
subprocess, warms it up, then drives it from a second process on loopback: ``wrk`` when it is
installed (a Lua script rotates the query mix), else this file's own asyncio/aiohttp generator
(``--tool python``). Prints throughput, p50/p90/p99/max latency, the error count (non-200
answers and socket errors; target zero) and the CPU the server and Elasticsearch used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

# The product page's queries, over the generator's labels (indexer.prediction_generator).
QUERIES: tuple[str, ...] = (
    "image_prefix:weather_clear AND score >= 0.8",
    "object_prefix:car AND score < 0.5",
    "object_prefix:pedestrian AND score = high",
    "(image_prefix:weather_rain OR image_prefix:weather_snow) AND score >= 0.5",
    'training_set = "model_v2" AND object_prefix:traffic_sign',
    "autotag_status = pending AND object_prefix:cyclist",
    "image_prefix:scene AND NOT object_prefix:car_truck",
    "object_prefix:car AND dataset = drives_3 AND uploaded_at >= 2025-01-01",
)
ROOT = Path(__file__).resolve().parent.parent

_LUA = """
local bodies = {%s}
local i = 0
request = function()
  i = i + 1
  return wrk.format("POST", "/v1/search", {["Content-Type"] = "application/json"},
                    bodies[(i %% #bodies) + 1])
end
"""


def _bodies(size: int) -> list[str]:
    return [json.dumps({"query": q, "size": size}) for q in QUERIES]


# --- the load generators (run in their own process) -------------------------------------------


def run_wrk(url: str, clients: int, duration: float, size: int) -> dict[str, Any]:
    bodies = ", ".join(json.dumps(b) for b in _bodies(size))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_LUA % bodies)
    try:
        threads = min(2, clients)
        command = [
            "wrk", f"-t{threads}", f"-c{clients}", f"-d{int(duration)}s", "--latency",
            "--timeout", "10s", "-s", script.name, f"{url}/v1/search",
        ]  # fmt: skip
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    return _parse_wrk(out) | {"tool": f"wrk -t{threads} -c{clients}", "raw": out}


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def _parse_wrk(out: str) -> dict[str, Any]:
    percentiles = {
        p: _ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)$", out, re.MULTILINE)
    }
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    seconds = _ms(re.search(r"requests in ([\d.]+\w+),", out).group(1)) / 1000  # type: ignore[union-attr]
    latency_max = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", out)
    errors: Counter[str] = Counter()
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors["non-2xx"] = int(match.group(1))
    if match := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    ):
        for name, value in zip(
            ("connect", "read", "write", "timeout"), match.groups(), strict=True
        ):
            if int(value):
                errors[f"socket {name}"] = int(value)
    return {
        "requests": requests,
        "seconds": seconds,
        "p50": percentiles.get("50"),
        "p90": percentiles.get("90"),
        "p99": percentiles.get("99"),
        "max": _ms(latency_max.group(1)) if latency_max else None,
        "errors": dict(errors),
    }


async def _python_load(url: str, clients: int, duration: float, size: int) -> dict[str, Any]:
    import aiohttp

    bodies = [b.encode() for b in _bodies(size)]
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    deadline = time.perf_counter() + duration
    headers = {"Content-Type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=10)

    async def client(session: aiohttp.ClientSession, offset: int) -> None:
        i = offset
        while time.perf_counter() < deadline:
            i += 1
            began = time.perf_counter()
            try:
                async with session.post(
                    f"{url}/v1/search", data=bodies[i % len(bodies)], headers=headers
                ) as response:
                    await response.read()
                    if response.status != 200:
                        errors[f"http {response.status}"] += 1
                        continue
            except (aiohttp.ClientError, TimeoutError) as error:
                errors[type(error).__name__] += 1
                continue
            latencies.append((time.perf_counter() - began) * 1000)

    connector = aiohttp.TCPConnector(limit=clients)
    began = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(client(session, i) for i in range(clients)))
    seconds = time.perf_counter() - began
    latencies.sort()

    def pct(q: float) -> float | None:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else None

    return {
        "tool": "aiohttp generator",
        "requests": len(latencies) + sum(errors.values()),
        "seconds": seconds,
        "p50": pct(0.5),
        "p90": pct(0.9),
        "p99": pct(0.99),
        "max": latencies[-1] if latencies else None,
        "errors": dict(errors),
    }


def generator_main(args: argparse.Namespace) -> int:
    """``--generate``: the second process; prints its result as one JSON line."""
    if args.tool == "wrk":
        result = run_wrk(args.url, args.clients, args.duration, args.size)
    else:
        result = asyncio.run(_python_load(args.url, args.clients, args.duration, args.size))
    print(json.dumps(result))
    return 0


def drive(url: str, tool: str, clients: int, duration: float, size: int) -> dict[str, Any]:
    command = [
        sys.executable, __file__, "--generate", "--url", url, "--tool", tool,
        "--clients", str(clients), "--duration", str(duration), "--size", str(size),
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


# --- setup: data, server ------------------------------------------------------------------------


def load_items(es_url: str, index: str, count: int) -> float:
    from indexer.prediction_generator import generate
    from store.connection import connect
    from store.mapping import index_settings, item_mapping
    from store.writer import PredictionWriter

    es = connect(es_url)
    es.indices.create(index=index, mappings=item_mapping(), settings=index_settings())
    began = time.perf_counter()
    writer = PredictionWriter(es, index, training_set="model_v1", batch_size=500)
    batches = (list(generate(500, seed=1, start=s)) for s in range(0, count, 500))
    for result in writer.write_many(batches):
        assert not result.failed, result.failed[:3]
    es.indices.refresh(index=index)
    es.indices.forcemerge(index=index, max_num_segments=1)
    es.close()
    return time.perf_counter() - began


def start_server(es_url: str, index: str, port: int) -> subprocess.Popen[bytes]:
    code = (
        "from cli.serve import serve; from api.settings import Settings; "
        f"serve(Settings(es_url={es_url!r}, index={index!r}), port={port}, log_level='warning')"
    )
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)


def wait_live(url: str, process: subprocess.Popen[bytes]) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/v1/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the API server did not become ready")


def es_pids(es_url: str) -> list[int]:
    """The pids of the Elasticsearch nodes behind ``es_url`` when they run on this machine."""
    from store.connection import connect

    es = connect(es_url)
    try:
        nodes = es.nodes.info(metric="process")["nodes"].values()
        hosts = {node.get("host") for node in nodes}
        local = hosts <= {"127.0.0.1", "localhost", "::1"}
        return [int(node["process"]["id"]) for node in nodes] if local else []
    finally:
        es.close()


def cpu_seconds(pids: list[int]) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=32, help="concurrent connections")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of warm-up load")
    parser.add_argument("--items", type=int, default=20_000, help="generated items to load")
    parser.add_argument("--size", type=int, default=20, help="hits per page")
    parser.add_argument(
        "--tool", choices=("wrk", "python"), default="wrk" if shutil.which("wrk") else "python"
    )
    parser.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        return generator_main(args)

    from harness.elastic_node import provide_node
    from store.provision import free_port

    with provide_node() as (es_url, how):
        index = f"load-items-{uuid.uuid4().hex[:8]}"
        try:
            load_s = load_items(es_url, index, args.items)
            print(f"loaded {args.items} items into {index} in {load_s:.0f} s ({es_url}, {how})")
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            server = start_server(es_url, index, port)
            try:
                wait_live(url, server)
                drive(url, args.tool, args.clients, args.warmup, args.size)
                pids = es_pids(es_url)
                server_cpu, es_cpu = cpu_seconds([server.pid]), cpu_seconds(pids)
                result = drive(url, args.tool, args.clients, args.duration, args.size)
                server_cpu = cpu_seconds([server.pid]) - server_cpu
                es_cpu = cpu_seconds(pids) - es_cpu
            finally:
                server.terminate()
                server.wait(timeout=30)
        finally:
            from store.connection import connect

            cleanup = connect(es_url)
            cleanup.indices.delete(index=index, ignore_unavailable=True)
            cleanup.close()

    seconds = result["seconds"]
    errors = result["errors"]
    print(f"load: {result['tool']}, {args.clients} clients, {seconds:.0f} s on /v1/search")
    print(f"  requests {result['requests']}, throughput {result['requests'] / seconds:.0f} req/s")
    print(
        f"  latency p50 {fmt(result['p50'])}, p90 {fmt(result['p90'])}, "
        f"p99 {fmt(result['p99'])}, max {fmt(result['max'])}"
    )
    print(f"  errors {sum(errors.values())}" + (f" {errors}" if errors else ""))
    print(
        f"  CPU: API server {server_cpu / seconds:.2f} cores, Elasticsearch"
        f" {es_cpu / seconds:.2f} cores, of {os.cpu_count()} on this machine"
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
