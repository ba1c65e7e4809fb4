"""Reading a multivariate time series from a CSV file, with errors that name file and line.

The file has a header row, then one row per time step in chronological order:

    date,HUFL,HULL,MUFL,MULL,LUFL,LULL,OT          (ETTh1: a time column + 7 variables)
    2016-07-01 00:00:00,5.827,2.009,1.599,0.462,4.203,1.340,30.531
    ...

    Date,Open,High,Low,Close,Volume                 (daily stock prices, e.g. MSFT)
    1986-03-13,0.0672,0.0755,0.0672,0.0727,1371330506

The *time column* is the first column when its header is one of ``date``, ``time``,
``datetime``, ``timestamp`` (any case) or when its first value is not a number; its values
are kept as text, never parsed (rows are taken in file order). Every other column must be
numeric in every row: an empty cell, ``nan``/``inf`` or any other text is a
:class:`DataError` ``FILE:LINE: column 'NAME': ...``; so is a row whose number of cells
differs from the header's (``FILE:LINE: expected N columns (as in the header), got M``).
Blank lines are skipped; a leading UTF-8 byte-order mark is dropped.

    series = read_series("ETTh1.csv")
    series.columns        # ['HUFL', 'HULL', 'MUFL', 'MULL', 'LUFL', 'LULL', 'OT']
    series.values.shape   # (17420, 7) float64
    series.times[:1]      # ['2016-07-01 00:00:00']
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .text import DataError, read_text

__all__ = ["Series", "read_series", "TIME_NAMES"]

#: header names taken as the time column when they head the first column
TIME_NAMES = ("date", "time", "datetime", "timestamp")


@dataclass
class Series:
    """A table of numeric columns over time, as read from ``path``."""

    path: str
    time_name: str | None       # header of the time column (None: the file has none)
    times: list[str]            # (N,) the time column's text, or row numbers as text
    columns: list[str]          # (C,) names of the numeric columns, in file order
    values: np.ndarray          # (N, C) float64

    def column_index(self, name: str) -> int:
        return self.columns.index(name)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_series(path: str | Path) -> Series:
    """Read the CSV time series at ``path`` (see the module docstring for the format)."""
    path = Path(path)
    text = read_text(path)
    rows = csv.reader(io.StringIO(text, newline=""))
    header = None
    for header in rows:
        if header:
            break
    if not header:
        raise DataError(f"{path}: no header row (the file holds only blank lines)")
    header = [h.strip() for h in header]
    header_line = rows.line_num
    for i, name in enumerate(header):
        if not name:
            raise DataError(f"{path}:{header_line}: column {i + 1} of the header has no name")
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if duplicated:
        raise DataError(f"{path}:{header_line}: duplicated column name(s) in the header: "
                        + ", ".join(repr(h) for h in duplicated))

    records: list[tuple[int, list[str]]] = []
    for row in rows:
        if not row or all(not cell.strip() for cell in row):
            continue                                  # a blank line
        if len(row) != len(header):
            raise DataError(f"{path}:{rows.line_num}: expected {len(header)} columns (as in "
                            f"the header), got {len(row)}")
        records.append((rows.line_num, row))
    if not records:
        raise DataError(f"{path}: the header is not followed by any data rows")

    first = records[0][1][0].strip()
    has_time = header[0].lower() in TIME_NAMES or not _is_number(first)
    start = 1 if has_time else 0
    columns = header[start:]
    if not columns:
        raise DataError(f"{path}:{header_line}: no numeric columns besides the time column "
                        f"{header[0]!r}")
    values = np.empty((len(records), len(columns)), dtype=np.float64)
    for r, (line, row) in enumerate(records):
        for c, cell in enumerate(row[start:]):
            cell = cell.strip()
            try:
                value = float(cell)
            except ValueError:
                what = "empty value" if not cell else f"{cell!r} is not a number"
                raise DataError(f"{path}:{line}: column {columns[c]!r}: {what} (every column "
                                f"but the time column must be numeric; missing values are "
                                f"not supported)") from None
            if not math.isfinite(value):
                raise DataError(f"{path}:{line}: column {columns[c]!r}: {cell!r} is not a "
                                f"finite number (missing values are not supported)")
            values[r, c] = value
    times = ([row[0].strip() for _, row in records] if has_time
             else [str(i) for i in range(len(records))])
    return Series(str(path), header[0] if has_time else None, times, columns, values)
