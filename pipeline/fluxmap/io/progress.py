"""Progress of long loops on the console."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

__all__ = ["Progress"]


class Progress:
    """A tqdm bar when installed and the output is a terminal, else log lines every 10 %.

    Used as ``with Progress(total, desc, log) as update: ... update(done)``.
    """

    def __init__(self, total: int, desc: str, log: Callable[[str], None]) -> None:
        self.total, self.desc, self.log = total, desc, log
        self.bar: Any = None
        self.last = -1

    def __enter__(self) -> Callable[[int], None]:
        try:
            from tqdm import tqdm

            if sys.stderr.isatty():
                self.bar = tqdm(total=self.total, desc=self.desc)
        except ImportError:
            pass
        return self.update

    def update(self, done: int) -> None:
        """Record ``done`` items finished."""
        if self.bar is not None:
            self.bar.n = done
            self.bar.refresh()
        elif self.total and (10 * done // self.total) > self.last:
            self.last = 10 * done // self.total
            self.log(f"  {self.desc}: {done}/{self.total}")

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
