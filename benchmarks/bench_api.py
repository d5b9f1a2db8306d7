"""REST API throughput and latency on 127.0.0.1 (server in its own process).

    python benchmarks/bench_api.py [--banks 100] [--clients 8] [--seconds 10]

Prints:
1. requests per second of ``POST /simulation/step`` on one 100-bank simulation
   with 8 concurrent clients (steps on one simulation are serialised, so this
   is the service's step rate plus HTTP overhead), beside the same model
   stepped directly in Python (the ceiling);
2. ``GET /metrics`` latency (median, p99) on a small simulation while a
   1,000-step run is in progress on another (1,000 banks), beside the same
   latency on an idle server.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import httpx

from finsim_mesa import FinancialModel


def start_server() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "finsim_mesa.cli", "serve", "--port",
                             str(port), "--log-level", "warning", "--models",
                             tempfile.mkdtemp()])
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start")


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def step_throughput(url: str, banks: int, clients: int, seconds: float) -> tuple[float, float]:
    with httpx.Client(base_url=url) as c:
        sid = c.post("/simulation/init", json={"num_banks": banks, "seed": 1,
                                               "steps": 1_000_000}).json()["sim_id"]
    counts = [0] * clients
    stop = time.perf_counter() + seconds
    latencies: list[float] = []

    def worker(k: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                r = c.post("/simulation/step", params={"sim_id": sid})
                if r.status_code == 409:  # the episode ended (collapse): start it again
                    c.post("/simulation/reset", params={"sim_id": sid}).raise_for_status()
                    continue
                latencies.append(time.perf_counter() - t0)
                r.raise_for_status()
                counts[k] += 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return sum(counts) / wall, statistics.median(latencies)


def direct_rate(banks: int, steps: int = 300) -> float:
    m = FinancialModel(n_banks=banks, rng=1, steps=1_000_000, agent_collect_every=0)
    t0 = time.perf_counter()
    for _ in range(steps):
        m.step()
    return steps / (time.perf_counter() - t0)


def metrics_latency(url: str, run_banks: int, run_steps: int) -> tuple[list[float], list[float],
                                                                        float]:
    with httpx.Client(base_url=url, timeout=600) as c:
        small = c.post("/simulation/init", json={"num_banks": 30, "seed": 2}).json()["sim_id"]
        big = c.post("/simulation/init", json={"num_banks": run_banks, "seed": 3,
                                               "steps": run_steps}).json()["sim_id"]
        idle = []
        for _ in range(300):
            t0 = time.perf_counter()
            c.get("/metrics", params={"sim_id": small}).raise_for_status()
            idle.append(time.perf_counter() - t0)
        done = threading.Event()
        run_wall = [0.0]

        def long_run() -> None:
            with httpx.Client(base_url=url, timeout=600) as c2:
                t0 = time.perf_counter()
                c2.post("/simulation/run", params={"sim_id": big, "num_steps": run_steps}
                        ).raise_for_status()
                run_wall[0] = time.perf_counter() - t0
            done.set()

        t = threading.Thread(target=long_run)
        t.start()
        busy = []
        while not done.is_set():
            t0 = time.perf_counter()
            c.get("/metrics", params={"sim_id": small}).raise_for_status()
            busy.append(time.perf_counter() - t0)
        t.join()
        assert c.get("/metrics", params={"sim_id": big}).json()["step"] == run_steps
    return idle, busy, run_wall[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--banks", type=int, default=100)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--run-banks", type=int, default=1000)
    ap.add_argument("--run-steps", type=int, default=1000)
    args = ap.parse_args()
    proc, url = start_server()
    try:
        rps, med = step_throughput(url, args.banks, args.clients, args.seconds)
        ceiling = direct_rate(args.banks)
        print(f"POST /simulation/step, {args.banks} banks, {args.clients} clients: "
              f"{rps:.0f} req/s (median latency {1e3 * med:.1f} ms); the model alone "
              f"{ceiling:.0f} steps/s (API / direct = {rps / ceiling:.2f})")
        idle, busy, wall = metrics_latency(url, args.run_banks, args.run_steps)
        print(f"GET /metrics, idle server: median {1e3 * statistics.median(idle):.2f} ms, "
              f"p99 {1e3 * pct(idle, 0.99):.2f} ms ({len(idle)} requests)")
        print(f"GET /metrics during a {args.run_steps}-step run on {args.run_banks} banks "
              f"({wall:.1f} s): median {1e3 * statistics.median(busy):.2f} ms, p99 "
              f"{1e3 * pct(busy, 0.99):.2f} ms ({len(busy)} requests; p99 busy/idle = "
              f"{pct(busy, 0.99) / pct(idle, 0.99):.1f}x)")
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
