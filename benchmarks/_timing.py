"""Wall-time measurement shared by the benchmarks: the best and the median of repeated calls."""
import statistics
import time


def best_of(fn, repeats: int, warm_up: bool = False) -> tuple[float, float]:
    """``(min, median)`` seconds of ``repeats`` calls of ``fn`` (after one uncounted call when ``warm_up``)."""
    if warm_up:
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)
