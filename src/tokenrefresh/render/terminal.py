"""Where output goes: lines, tables and JSON on a stream, safe whatever they hold.

`line` and `table` scrub and escape all they print; `json` escapes what json.dumps leaves
raw; rich draws tables on a terminal (plain aligned text when piped) and never reads
markup in a cell.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, TextIO

from tokenrefresh.base.logs import terminal_safe_json
from tokenrefresh.render.values import CELL_LIMIT, shown

__all__ = ["Terminal"]


class Terminal:
    """A stream (stdout by default) and the three ways of writing to it."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout
        self._console: Any = None

    @property
    def is_terminal(self) -> bool:
        return bool(getattr(self._stream, "isatty", lambda: False)())

    def json(self, data: Any) -> None:
        """Indented on a terminal; one compact line when piped (C-speed, for big documents)."""
        indent = 2 if self.is_terminal else None
        self._write(terminal_safe_json(data, indent=indent))

    def line(self, text: str = "") -> None:
        """One line, scrubbed and escaped: whatever outside text it holds is shown inert."""
        self._write(shown(text))

    def table(
        self,
        title: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[str]],
        *,
        empty: str | None = None,
    ) -> None:
        """Every cell (and the title) scrubbed, escaped and bounded, then laid out; with
        `empty`, that line instead where there are no rows."""
        if empty is not None and not rows:
            self.line(empty)
            return
        title = shown(title, CELL_LIMIT)
        headers = [shown(column, CELL_LIMIT) for column in columns]
        cells = [[shown(value, CELL_LIMIT) for value in row] for row in rows]
        if self.is_terminal:
            self._rich_table(title, headers, cells)
            return
        if title:
            self._write(f"{title}:")
        widths = [
            max([len(header), *(len(row[index]) for row in cells)])
            for index, header in enumerate(headers)
        ]
        self._write("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
        for row in cells:
            self._write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())

    def _write(self, text: str) -> None:
        self._stream.write(text + "\n")
        self._stream.flush()

    def _rich_table(self, title: str, headers: list[str], cells: list[list[str]]) -> None:
        """Cells as rich Text, never markup: `[link=...]` or `[/]` in a label prints as is."""
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        if self._console is None:
            self._console = Console(file=self._stream, highlight=False, markup=False, emoji=False)
        table = Table(title=Text(title), title_justify="left")
        for header in headers:
            table.add_column(Text(header), overflow="fold")
        for row in cells:
            table.add_row(*(Text(value) for value in row))
        self._console.print(table)
