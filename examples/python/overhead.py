"""Overhead of driving the simulator from Python: samples/s of DirectSimulator.advance in a Python
loop (several chunk sizes) against the CLI's own loop (`hdsgd run`, one run, one thread), at
N = 10^3 and 10^4. Quadratic p = 2, p* = 1 (the quickstart model), B = 1.

    python examples/python/overhead.py [--cli target/release/hdsgd] [--repeat 3]

Each figure is the best of --repeat measurements (interleaved), one thread. --clock cpu (default)
counts CPU time (the Python thread's; the CLI process's, start-up and its short ODE included), which
a shared machine does not inflate; --clock wall the wall clock (for the CLI: summary.json's
simulation time).
"""

import argparse
import json
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import hdsgd

MODEL = {"activation": "quadratic", "p": 2, "p_star": 1, "a": "uniform", "v": "ones"}
TRAINING = {"eta": 0.1}
SAMPLES = {1000: 3_000_000, 10000: 600_000}


def experiment(n, samples, simulator="direct"):
    return {
        "name": "overhead",
        "model": MODEL,
        "training": TRAINING,
        "simulation": {"n": [n], "seeds": 1, "base_seed": 1, "simulator": simulator},
        "time": {"t_max": samples / n, "points": 1},
        "ode": {"initial": "explicit"},
        "init": {"q0": [[1.0, 0.0], [0.0, 1.0]], "m0": [[0.0], [0.0]]},
        "output": {"figures": False},
    }


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cli_rate(cli, n, samples, clock, simulator="direct"):
    """samples/s of the CLI's run: CPU time of the whole process, or the simulation's wall time
    as summary.json reports it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "overhead.toml"
        path.write_text(hdsgd.to_toml(experiment(n, samples, simulator)))
        cpu = children_cpu()
        subprocess.run([cli, "run", path, "--out", Path(tmp) / "out", "--threads", "1", "--quiet"], check=True,
                       capture_output=True)
        if clock == "cpu":
            return samples / (children_cpu() - cpu)
        return json.loads((Path(tmp) / "out" / "summary.json").read_text())["runs"][0]["samples_per_second"]


def python_rate(n, samples, chunk, clock, simulator="direct"):
    cls = hdsgd.ChainSimulator if simulator == "chain" else hdsgd.DirectSimulator
    sim = cls(experiment(n, samples, simulator), n, 0)
    calls = samples // chunk
    now = time.thread_time if clock == "cpu" else time.perf_counter
    start = now()
    for _ in range(calls):
        sim.advance(chunk)
    return calls * chunk / (now() - start)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cli", default=str(Path(__file__).resolve().parents[2] / "target" / "release" / "hdsgd"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    args = ap.parse_args()
    rows = []
    for n, samples in SAMPLES.items():
        chunks = [100, n, 10 * n]
        best = {"cli": 0.0, **{c: 0.0 for c in chunks}}
        for _ in range(args.repeat):
            best["cli"] = max(best["cli"], cli_rate(args.cli, n, samples, args.clock))
            for c in chunks:
                best[c] = max(best[c], python_rate(n, samples, c, args.clock))
        for key in ["cli"] + chunks:
            label = "CLI (hdsgd run, record loop)" if key == "cli" else f"Python advance({key}) loop"
            rows.append((n, label, best[key], best[key] / best["cli"]))
    # The chain simulator (cost per sample independent of N) at N = 10^6.
    n, samples, c = 10**6, 5_000_000, 10**5
    cli_c = max(cli_rate(args.cli, n, samples, args.clock, "chain") for _ in range(args.repeat))
    py_c = max(python_rate(n, samples, c, args.clock, "chain") for _ in range(args.repeat))
    rows.append((n, "chain: CLI (hdsgd run, record loop)", cli_c, 1.0))
    rows.append((n, f"chain: Python advance({c}) loop", py_c, py_c / cli_c))
    kernel = hdsgd.DirectSimulator(experiment(1000, 1000), 1000).kernel
    print(f"kernel: {kernel}; quadratic p = 2, p* = 1, B = 1; best of {args.repeat}, {args.clock} clock, one thread")
    print("| N | loop | samples/s | vs CLI |")
    print("|---|---|---|---|")
    for n, label, rate, ratio in rows:
        print(f"| {n} | {label} | {rate:,.0f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
