"""Long-lived data out of the cyclic garbage collector's way.

A worker holds millions of long-lived objects (the ASN table, the match and ownership
indexes, the tables' rows). Every full collection of Python's cyclic GC walks all of them,
and a batch allocates enough to trigger collections often: that cost the match stage a
third of its CPU (`benchmarks/profile_stages.py --no-freeze`). `freeze` moves what exists
now into a generation the collector no longer walks; it is called once a stage's data is
loaded and after an index is rebuilt. Frozen objects are still freed by reference counting
when dropped; only a cycle that was already garbage when frozen would stay (the collection
first clears those).
"""

from __future__ import annotations

import gc


def freeze() -> None:
    gc.collect()
    gc.freeze()
