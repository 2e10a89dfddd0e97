"""Thread limits shared by the benchmarks: torch and the BLAS libraries at once."""
import torch


def limit_threads(n: int | None) -> None:
    """Use ``n`` threads in torch and (when threadpoolctl is installed) in every BLAS; None leaves them alone."""
    if not n:
        return
    torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(n)
