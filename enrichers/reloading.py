"""Pick up replaced data files (ASN tables, MMDBs) without restarting a worker.

`Reloading` holds a resource opened by a factory and watches the files it was built from.
On `get()`, at most every `interval` seconds (monotonic clock), it compares each file's
(mtime, size, inode); when they changed it opens a new resource *before* closing the old one,
so lookups never see a gap. If the new file is broken the old resource stays in service and
the error goes to `on_error`; the same broken file is not retried until it changes again.

Call `get()` once per batch and use that resource for the batch: the swap closes the old
resource, so a resource must not be held across batches or shared with other threads.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from os import PathLike
from pathlib import Path
from typing import Generic, Protocol, TypeVar

Signature = tuple[tuple[int, int, int] | None, ...]


class Closable(Protocol):
    def close(self) -> None: ...


R = TypeVar("R", bound=Closable)


def file_signature(paths: Iterable[Path]) -> Signature:
    """(mtime_ns, size, inode) of each file; None for a missing one (mid-replacement)."""
    result: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            result.append(None)
        else:
            result.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(result)


def _ignore(error: Exception) -> None:
    pass


class Reloading(Generic[R]):
    """A resource from `factory()` that is rebuilt when any of `paths` is replaced.

    `factory` takes no arguments (bind the paths with a lambda or functools.partial) and is
    called once here, so a broken file at start-up raises as usual. `on_error` receives the
    exception of a failed reload.
    """

    def __init__(self, factory: Callable[[], R], paths: Iterable[str | PathLike[str]], *,
                 interval: float = 30.0, on_error: Callable[[Exception], None] = _ignore,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._factory = factory
        self.paths = [Path(p) for p in paths]
        self.interval = interval
        self._on_error = on_error
        self._clock = clock
        self._lock = threading.Lock()
        self._seen = file_signature(self.paths)
        self._resource: R = factory()
        self._next_check = clock() + interval
        self.reloads = 0  # successful swaps, for metrics and tests

    def get(self) -> R:
        """The current resource, reloaded first if a file changed since the last check."""
        if self._clock() >= self._next_check:
            self.check()
        return self._resource

    def check(self) -> bool:
        """Compare the files now (whatever the interval); True if a new resource was swapped in."""
        if not self._lock.acquire(blocking=False):
            return False  # another thread is reloading; keep serving the current resource
        try:
            self._next_check = self._clock() + self.interval
            current = file_signature(self.paths)
            if current == self._seen:
                return False
            self._seen = current
            if None in current:
                self._on_error(FileNotFoundError(f"missing: {self._missing(current)}"))
                return False
            try:
                fresh = self._factory()
            except Exception as exc:  # any failure of a new file must leave the old one serving
                self._on_error(exc)
                return False
            old, self._resource = self._resource, fresh
            self.reloads += 1
            old.close()
            return True
        finally:
            self._lock.release()

    def _missing(self, signature: Signature) -> str:
        return ", ".join(str(p) for p, s in zip(self.paths, signature, strict=True) if s is None)

    def close(self) -> None:
        """Close the current resource."""
        self._resource.close()

    def __enter__(self) -> Reloading[R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
