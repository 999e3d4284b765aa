"""One BLAS thread for small matrix products.

Waking BLAS threads costs more than they save on products of a few million multiply-adds, and
far more when the machine's cores are busy (each product then waits for every thread to be
scheduled). Products below ``SMALL_WORK`` multiply-adds run on one thread; larger ones keep
the library's default.
"""

from __future__ import annotations

import contextlib
import functools

SMALL_WORK = 1e8  # multiply-adds


@functools.cache
def _controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def small_products(multiply_adds: float):
    """A context manager limiting BLAS to one thread when the work is small, else a no-op."""
    if multiply_adds >= SMALL_WORK:
        return contextlib.nullcontext()
    return _controller().limit(limits=1, user_api="blas")
