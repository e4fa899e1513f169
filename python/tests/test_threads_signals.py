"""A long `advance` releases the GIL (other Python threads run meanwhile), concurrent use is safe,
and Ctrl-C (SIGINT, or _thread.interrupt_main) stops it within a second, leaving a usable run."""

import _thread
import os
import signal
import threading
import time

import numpy as np
import pytest

import hdsgd

EXP = {"model": {"activation": "quadratic", "p": 2, "p_star": 1}, "training": {"eta": 0.05}}
N = 2000


def samples_per_second():
    sim = hdsgd.DirectSimulator(EXP, N, 0)
    start = time.perf_counter()
    sim.advance(20 * N)
    return 20 * N / (time.perf_counter() - start)


def test_advance_releases_the_gil():
    # About a second of simulation in a worker thread; the main thread counts meanwhile.
    samples = max(int(samples_per_second()) // N, 1) * N
    sim = hdsgd.DirectSimulator(EXP, N, 0)
    started = threading.Event()

    def work():
        started.set()
        sim.advance(samples)

    worker = threading.Thread(target=work)
    worker.start()
    started.wait()
    time.sleep(0.2)  # the worker is inside advance by now
    # Had advance kept the GIL, the main thread could not run again before it returned.
    alive_after_sleep = worker.is_alive()
    count = 0
    while worker.is_alive():
        count += 1
    worker.join()
    assert sim.samples == samples
    assert alive_after_sleep
    assert count > 10_000, count


def test_concurrent_simulators_and_calls_are_safe():
    """Two simulators advancing in two threads give the numbers of sequential runs, and a call on
    a simulator that another thread is advancing waits for it (no deadlock, no torn state)."""
    ref = []
    for seed in (0, 1):
        s = hdsgd.DirectSimulator(EXP, N, seed)
        s.advance(20 * N)
        ref.append(s.overlaps()[0])
    sims = [hdsgd.DirectSimulator(EXP, N, seed) for seed in (0, 1)]
    threads = [threading.Thread(target=s.advance, args=(20 * N,)) for s in sims]
    for t in threads:
        t.start()
    time.sleep(0.01)
    t_seen = sims[0].t  # waits for the worker's advance when it is still running
    assert t_seen in (0.0, 20.0)
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive()
    for s, q in zip(sims, ref):
        np.testing.assert_array_equal(s.overlaps()[0], q)


@pytest.fixture(autouse=True)
def sigint_raises_keyboard_interrupt():
    """Python's own SIGINT handler, even where the process inherited SIGINT ignored (a background
    job of a non-interactive shell, some CI runners)."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def _interrupt_after(delay, how):
    fired = {}

    def fire():
        fired["at"] = time.perf_counter()
        if how == "interrupt_main":
            _thread.interrupt_main()
        else:
            os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(delay, fire)
    timer.start()
    return timer, fired


@pytest.mark.parametrize("how", ["interrupt_main", "sigint"])
def test_ctrl_c_stops_a_long_advance_within_a_second(how):
    sim = hdsgd.DirectSimulator(EXP, N, 3)
    target = 10**12  # hours of work
    timer, fired = _interrupt_after(0.3, how)
    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        sim.advance(target)
    caught = time.perf_counter()
    timer.join()
    assert caught - fired["at"] < 1.0, f"stopped {caught - fired['at']:.2f} s after the signal"
    assert caught - start < 5.0
    # The run stopped at a whole step and goes on exactly as an uninterrupted one.
    steps = sim.steps
    assert 0 < steps < target
    sim.advance(N)
    ref = hdsgd.DirectSimulator(EXP, N, 3)
    ref.advance(steps + N)
    for x, y in zip(sim.overlaps(), ref.overlaps()):
        np.testing.assert_array_equal(x, y)


def test_ctrl_c_stops_a_chain_run():
    sim = hdsgd.ChainSimulator(EXP, 10**7, 0)
    timer, fired = _interrupt_after(0.3, "interrupt_main")
    with pytest.raises(KeyboardInterrupt):
        sim.advance(10**13)
    caught = time.perf_counter()
    timer.join()
    assert caught - fired["at"] < 1.0
    assert sim.steps > 0


def test_commands_release_the_gil_and_stop_on_ctrl_c(tmp_path):
    exp = {
        "model": {"activation": "quadratic", "p": 2, "p_star": 1},
        "training": {"eta": 0.05},
        "simulation": {"n": [4000], "seeds": 2},
        "time": {"t_max": 40.0, "points": 4},
        "output": {"figures": False},
    }
    # GIL: a command in another thread lets this one run.
    done = threading.Event()
    worker = threading.Thread(target=lambda: (hdsgd.run(exp, threads=1), done.set()))
    worker.start()
    time.sleep(0.2)
    alive = worker.is_alive()
    count = 0
    while not done.is_set():
        count += 1
    worker.join()
    assert alive and count > 10_000
    # Ctrl-C: the call returns within a second and cancels the computation, which stops at its
    # next record (every 10⁵ samples here, ~0.1 s): within seconds, no folder and no staging
    # folder are left. (Uncancelled, this run of 2·10⁸ samples takes minutes.)
    big = {**exp, "time": {"t_max": 2.0e5, "points": 2000}, "simulation": {"n": [1000], "seeds": 1}}
    out = tmp_path / "big"
    timer, fired = _interrupt_after(0.3, "sigint")
    with pytest.raises(KeyboardInterrupt):
        hdsgd.run(big, threads=1, out=out)
    caught = time.perf_counter()
    timer.join()
    assert caught - fired["at"] < 1.0
    deadline = time.perf_counter() + 10.0
    while any(tmp_path.iterdir()) and time.perf_counter() < deadline:
        time.sleep(0.05)
    assert list(tmp_path.iterdir()) == []
