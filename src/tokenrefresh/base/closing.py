"""`Closing`: what `with` means for everything here that holds a resource and has `close()`."""

from __future__ import annotations

from typing import Self

__all__ = ["Closing"]


class Closing:
    """A `with` block gives the object itself and calls its `close()` on the way out."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
