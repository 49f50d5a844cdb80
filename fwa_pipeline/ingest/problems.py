"""What a rejected batch reports: every problem found, each naming file, place and column."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# Rows listed per problem, and problems listed per rejection, before "and N more".
MAX_ROWS_SHOWN = 5
MAX_PROBLEMS_SHOWN = 20

NUMBERING = (
    "rows are data rows counted from 1 after the header (blank lines not counted); "
    "lines are physical lines of the file counted from 1"
)


@dataclass(frozen=True)
class Problem:
    """One reason a batch is rejected.

    ``rows`` are 1-based data rows (the header is not a row) for problems found in parsed cells;
    ``line`` is a 1-based physical line for problems found before the CSV could be parsed (bad
    encoding, binary bytes) and for the header (line 1).
    """

    file: str
    message: str
    column: str | None = None
    rows: tuple[int, ...] = ()
    more_rows: int = 0
    line: int | None = None

    def __str__(self) -> str:
        place = [self.file]
        if self.line is not None:
            place.append(f"line {self.line}")
        if self.rows:
            listed = ", ".join(str(r) for r in self.rows)
            more = f" and {self.more_rows:,} more" if self.more_rows else ""
            place.append(f"{'row' if len(self.rows) == 1 else 'rows'} {listed}{more}")
        if self.column is not None:
            place.append(f"column {self.column}")
        return f"{', '.join(place)}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "rows": list(self.rows),
            "more_rows": self.more_rows,
            "column": self.column,
            "message": self.message,
        }


class BatchRejected(Exception):
    """The batch was not stored. ``str()`` is the user-facing message; ``problems`` is the full
    list (the API returns it as JSON)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        # In reading order: by file (as first reported), then place, whichever check found them.
        files = {p.file: i for i, p in reversed(list(enumerate(problems)))}
        self.problems = sorted(
            problems, key=lambda p: (files[p.file], p.line or 0, p.rows[0] if p.rows else 0)
        )
        super().__init__(self.problems)

    def __str__(self) -> str:
        count = len(self.problems)
        lines = [
            f"batch rejected, nothing was stored: {count} problem{'s' if count != 1 else ''} "
            f"({NUMBERING})"
        ]
        lines += [f"  - {p}" for p in self.problems[:MAX_PROBLEMS_SHOWN]]
        if count > MAX_PROBLEMS_SHOWN:
            lines.append(f"  - and {count - MAX_PROBLEMS_SHOWN} more problems")
        return "\n".join(lines)
