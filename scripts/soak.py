"""Soak test: one `ldensf serve` replica on Redis under `ldensf loadtest` at a steady rate for minutes,
its resident memory sampled every few seconds.

    .venv/bin/python scripts/soak.py --bundle models/bundles/sw --duration 300 --rate 100 --out soak/

Writes soak/soak.json (the load report, RSS samples and the verdict) and soak/soak.png (RSS and
throughput over time), and exits 1 if any request failed or the RSS grew by more than --max-growth-mib
between the end of the warm-up and the end of the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from ldensf.ports import free_port


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bundle", type=Path, default=Path("models/bundles/sw"))
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of load")
    parser.add_argument("--rate", type=float, default=100.0, help="posts per second in total")
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before the RSS baseline")
    parser.add_argument("--max-growth-mib", type=float, default=50.0)
    parser.add_argument("--out", type=Path, default=Path("soak"))
    args = parser.parse_args()

    from ldensf.commands.loadtest import load_truth
    from ldensf.loadtest import LoadPlan, run_load
    from service.client import Client

    bundle = args.bundle.resolve()
    _, truth = load_truth(None, bundle, seed=0)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "models"
        model_dir.mkdir()
        (model_dir / bundle.name).symlink_to(bundle)
        port = free_port()
        prefix = f"ldensf-soak-{uuid.uuid4().hex[:8]}"
        env_prefix = {"LDENSF_REDIS_PREFIX": prefix, "OMP_NUM_THREADS": "1", "LDENSF_DEVICE": "cpu"}
        import os

        log = (args.out / "server.log").open("wb")
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ldensf.cli",
                "serve",
                "--port",
                str(port),
                "--model-dir",
                str(model_dir),
                "--redis-url",
                args.redis_url,
                "--log-level",
                "warning",
            ],
            env={**os.environ, **env_prefix},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            with Client(url) as client:
                deadline = time.time() + 120
                while not client.ready():
                    if server.poll() is not None or time.time() > deadline:
                        raise RuntimeError("the server did not start; see server.log")
                    time.sleep(0.2)
            samples: list[tuple[float, float]] = []
            stop = threading.Event()
            started = time.perf_counter()

            def sample() -> None:
                while not stop.is_set():
                    samples.append((time.perf_counter() - started, rss_mib(server.pid)))
                    stop.wait(5.0)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            plan = LoadPlan(url, bundle.name, args.sessions, args.duration, args.rate, 20, 0.1, None, 0)
            report = asyncio.run(run_load(plan, truth))
            stop.set()
            sampler.join()
            samples.append((time.perf_counter() - started, rss_mib(server.pid)))
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()
            import redis

            store = redis.Redis.from_url(args.redis_url)
            keys = list(store.scan_iter(match=f"{prefix}:*", count=1000))
            if keys:
                store.delete(*keys)

    t = np.array([s[0] for s in samples])
    rss = np.array([s[1] for s in samples])
    baseline = float(np.interp(args.warmup, t, rss))
    growth = float(rss[-1] - baseline)
    ok = report.errors == 0 and growth <= args.max_growth_mib
    result = {
        "command": " ".join(sys.argv),
        "load": report.to_dict(),
        "rss_mib": [{"t_s": round(a, 1), "rss_mib": round(b, 1)} for a, b in samples],
        "rss_baseline_mib": baseline,
        "rss_final_mib": float(rss[-1]),
        "rss_growth_after_warmup_mib": growth,
        "max_growth_mib": args.max_growth_mib,
        "passed": ok,
    }
    (args.out / "soak.json").write_text(json.dumps(result, indent=2) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    ax1.plot(t, rss, marker=".")
    ax1.axvline(args.warmup, color="grey", ls="--", lw=0.8)
    ax1.set_ylabel("server RSS (MiB)")
    ax1.set_title(
        f"soak: {args.rate:g} posts/s, {args.sessions} sessions, growth {growth:+.1f} MiB after warm-up"
    )
    timeline = report.timeline
    ax2.plot([r["t_s"] for r in timeline], [r["updates"] for r in timeline], lw=0.8, label="updates/s")
    ax2.plot([r["t_s"] for r in timeline], [r["p99_ms"] for r in timeline], lw=0.8, label="p99 ms")
    ax2.set_xlabel("time (s)")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(args.out / "soak.png", dpi=110)
    print(report.summary())
    print(
        f"RSS {baseline:.1f} MiB after warm-up -> {rss[-1]:.1f} MiB at the end "
        f"({growth:+.1f} MiB; bound {args.max_growth_mib} MiB)"
    )
    print("PASSED" if ok else "FAILED", f"(report in {args.out / 'soak.json'})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
