"""``sketchla bench dask``: CountSketch of a row-chunked dask array on a ``LocalCluster``.

Two parts, one process, medians of interleaved rounds (see ``_timing``):

* **throughput vs chunk size and workers.** The data (n x d float64, uniform in [0, 1),
  generated block by block from a fixed seed, so every chunking holds the same numbers) is
  persisted on a cluster of 1 worker and on one of 2 workers (worker processes, 1 thread and
  ``NUMBA_NUM_THREADS=1`` each: the worker count is the parallelism); for each chunk size,
  ``(S @ X).compute()`` on each cluster is timed interleaved with the in-memory
  ``S @ A`` on the driver (numba on all cores) -- the baseline ratio. Data stays on the
  workers: only the (m, d) partial sketches move.
* **out of core** (``out_of_core_rows`` > 0): the same lazily generated data at a size
  larger than the machine's memory (default 2^26 x 64 float64 = 32 GiB), sketched on a fresh
  2-worker cluster without ever being held: each task generates one chunk and sketches it.
  Reported: wall time, the peak resident memory of the driver, scheduler and workers together
  (sampled every 50 ms), and the ratio against a generate-and-sum pass over the same array
  (the cost of producing the data at all). Run once each (tens of seconds).
"""

from __future__ import annotations

import functools
import os
import threading
import time

import numpy as np

from ..operators import CountSketch
from ._timing import Case, Comparison, compare, run_interleaved

#: sizes of ``sketchla bench dask --quick`` (no out-of-core run)
QUICK = {"n": 2**18, "d": 32, "m": 256, "chunk_rows": (2**15, 2**17), "out_of_core_rows": 0}

#: rows generated per seeded generator call; chunk sizes are multiples of it, so every chunking
#: holds the same numbers
_GEN_ROWS = 2**15


def _generate(block: np.ndarray | None = None, *, seed: int, d: int, block_info=None):
    """Rows [lo, hi) of the benchmark matrix (for ``map_blocks``)."""
    lo, hi = block_info[None]["array-location"][0]
    out = np.empty((hi - lo, d))
    for b in range(lo // _GEN_ROWS, -(-hi // _GEN_ROWS)):
        a, z = b * _GEN_ROWS, (b + 1) * _GEN_ROWS
        rng = np.random.default_rng([seed, b])
        if lo <= a and z <= hi:  # the usual case: generate in place
            rng.random(out=out[a - lo : z - lo])
        else:
            rows = rng.random((_GEN_ROWS, d))
            out[max(lo, a) - lo : min(hi, z) - lo] = rows[max(lo, a) - a : min(hi, z) - a]
    return out


def generated(n: int, d: int, chunk: int, seed: int):
    """The lazily generated (n, d) dask array in row chunks of ``chunk``."""
    import dask.array as da

    chunks = ((chunk,) * (n // chunk) + ((n % chunk,) if n % chunk else ()), (d,))
    return da.map_blocks(_generate, dtype=np.float64, chunks=chunks, seed=seed, d=d)


def _cluster(n_workers: int):
    import dask
    from distributed import Client, LocalCluster

    # NUMBA_NUM_THREADS must be in the environment before the spawned worker imports numba
    # (spawn re-imports the parent's main module first), hence pre-spawn-environ, not env=
    environ = {**dask.config.get("distributed.nanny.pre-spawn-environ"), "NUMBA_NUM_THREADS": 1}
    config = {
        "distributed.worker.multiprocessing-method": "spawn",
        "distributed.nanny.pre-spawn-environ": environ,
    }
    with dask.config.set(config):
        cluster = LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
    return cluster, Client(cluster, set_as_default=False)


class _PeakRSS:
    """Peak of the summed resident memory of this process and its children (sampled)."""

    def __init__(self, interval: float = 0.05) -> None:
        # psutil ships no type information (types-psutil is not a dependency)
        import psutil  # type: ignore[import-untyped]

        self._me = psutil.Process(os.getpid())
        self._interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        total = 0
        for p in [self._me, *self._me.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except Exception:  # a child that just exited
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            time.sleep(self._interval)

    def __enter__(self) -> _PeakRSS:
        self.peak = self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _out_of_core(rows: int, d: int, m: int, chunk: int, seed: int, progress) -> tuple:
    """(cases, comparison) of the out-of-core run on a fresh 2-worker cluster."""
    import psutil

    cluster, client = _cluster(2)
    try:
        S = CountSketch(m, rows, rng=seed)
        X = generated(rows, d, chunk, seed)
        # compile / load the kernels in the workers first (not timed)
        warm = generated(2 * chunk, d, chunk, seed)
        client.compute(CountSketch(m, 2 * chunk, rng=seed) @ warm, sync=True)
        results = {}
        for name, expr in [("generate + sum", X.sum()), ("generate + countsketch", S @ X)]:
            if progress:
                progress(f"out of core: {name} ({X.nbytes / 2**30:.0f} GiB)")
            with _PeakRSS() as peak:
                t0 = time.perf_counter()
                client.compute(expr, sync=True)
                results[name] = (time.perf_counter() - t0, peak.peak)
    finally:
        client.close()
        cluster.close()
    ram = psutil.virtual_memory().total
    t_sketch, peak_sketch = results["generate + countsketch"]
    cases = {
        f"ooc {name}": Case(f"ooc {name}", lambda: None, times=[t])
        for name, (t, _) in results.items()
    }
    meaning = (
        f"{X.nbytes / 2**30:.0f} GiB (RAM {ram / 2**30:.0f} GiB) in {t_sketch:.0f} s = "
        f"{X.nbytes / t_sketch / 1e9:.2f} GB/s; peak RSS {peak_sketch / 2**30:.2f} GiB "
        f"(sum pass: {results['generate + sum'][1] / 2**30:.2f} GiB)"
    )
    comp = Comparison(
        f"out of core {rows}x{d}, chunk {chunk}: sketch vs generate+sum",
        "ooc generate + countsketch",
        "ooc generate + sum",
        None,
        meaning,
    )
    return cases, comp


def run(
    n: int = 2**21,
    d: int = 64,
    m: int = 1024,
    repeat: int = 5,
    chunk_rows: tuple[int, ...] = (2**15, 2**17, 2**19),
    workers: tuple[int, ...] = (1, 2),
    out_of_core_rows: int = 2**26,
    out_of_core_chunk: int = 2**18,
    seed: int = 0,
    progress=None,
) -> dict:
    """Time every case and return ``{"sizes": ..., "cases": {name: Case}, "rows": [...]}``.

    ``out_of_core_rows = 0`` skips the out-of-core run; chunk sizes are rounded to multiples
    of 2^15 rows.
    """
    from distributed import wait

    chunk_rows = tuple(max(_GEN_ROWS, c // _GEN_ROWS * _GEN_ROWS) for c in chunk_rows)
    S = CountSketch(m, n, rng=seed)
    clusters = {w: _cluster(w) for w in workers}
    timed: dict[str, Case] = {}
    comparisons = []
    try:
        A = next(iter(clusters.values()))[1].compute(generated(n, d, chunk_rows[0], seed)).result()
        for c in chunk_rows:
            cases = [Case(f"numpy in memory (chunk {c} phase)", lambda: S @ A)]
            persisted = []
            for w, (_, client) in clusters.items():
                X = client.persist(generated(n, d, c, seed))
                with client.as_current():
                    wait(X)
                persisted.append(X)
                expr = S @ X
                name = f"dask {w} worker{'s' * (w > 1)}, chunk {c}"
                cases.append(Case(name, functools.partial(client.compute, expr, sync=True)))
                comparisons.append(
                    Comparison(
                        f"{w} worker{'s' * (w > 1)}, chunks of {c} rows vs numpy",
                        name,
                        cases[0].name,
                        None,
                        "in-memory time / dask time",
                    )
                )
            timed.update(run_interleaved(cases, repeat, progress))
            del persisted, X
    finally:
        for cluster, client in clusters.values():
            client.close()
            cluster.close()
    sizes = {
        "n": n,
        "d": d,
        "m": m,
        "repeat": repeat,
        "operator": "CountSketch",
        "data": f"{n * d * 8 / 2**20:.0f} MiB",
        "workers": ",".join(map(str, workers)),
    }
    if out_of_core_rows:
        cases, comp = _out_of_core(out_of_core_rows, d, m, out_of_core_chunk, seed, progress)
        timed.update(cases)
        comparisons.append(comp)
        sizes["out-of-core rows"] = out_of_core_rows
    return {"sizes": sizes, "cases": timed, "rows": compare(timed, comparisons)}
