"""Uploaded 2-D point sets (the playground's CSV): checked row by row, with a message that says what is wrong."""

from __future__ import annotations

import numpy as np

#: Limits for uploaded point sets: enough for any 2-D demo, small enough to train live.
MAX_CSV_BYTES = 5_000_000
MAX_CSV_ROWS = 20_000
MIN_CSV_ROWS = 10


def parse_points_csv(data: bytes) -> tuple[np.ndarray, np.ndarray | None]:
    """Parse an uploaded CSV of 2-D points: columns ``x, y`` and optionally an integer ``label`` (blank or -1
    where it is not known, as the playground's download of drawn points writes).

    A header row is allowed. Returns ``(X, labels or None)``. Raises ``ValueError`` saying what is
    wrong, with the row number where it helps: not text, too big, too few or too many rows, the wrong
    number of columns, a value that is not a number, NaN or infinity, labels that are not integers.
    """
    import csv
    import io as _io

    if len(data) > MAX_CSV_BYTES:
        raise ValueError(f"The file is {len(data) / 1e6:.1f} MB; the limit is {MAX_CSV_BYTES / 1e6:.0f} MB.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError("The file is not a text CSV (it is not UTF-8 text).") from None
    rows = [r for r in csv.reader(_io.StringIO(text)) if r and any(c.strip() for c in r)]
    if not rows:
        raise ValueError("The file is empty.")

    def numeric(cell: str) -> bool:
        try:
            float(cell)
            return True
        except ValueError:
            return False

    if not all(numeric(c) for c in rows[0]):
        rows = rows[1:]  # a header
    if len(rows) < MIN_CSV_ROWS:
        raise ValueError(f"The file has {len(rows)} data rows; at least {MIN_CSV_ROWS} are needed.")
    if len(rows) > MAX_CSV_ROWS:
        raise ValueError(f"The file has {len(rows):,} rows; at most {MAX_CSV_ROWS:,} can be trained on live.")
    width = len(rows[0])
    if width not in (2, 3):
        raise ValueError(f"Expected 2 columns (x, y) or 3 (x, y, label); the first data row has {width}.")
    values = np.empty((len(rows), width))
    for i, row in enumerate(rows, start=1):
        if len(row) != width:
            raise ValueError(f"Row {i} has {len(row)} columns; the others have {width}.")
        for j, cell in enumerate(row):
            if j == 2 and not cell.strip():
                values[i - 1, j] = -1  # a blank label: this point's cluster is not known
                continue
            try:
                values[i - 1, j] = float(cell)
            except ValueError:
                raise ValueError(f"Row {i}, column {j + 1}: {cell.strip()[:20]!r} is not a number.") from None
    bad = ~np.isfinite(values).all(1)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} row(s) hold NaN or infinity (the first is row {int(np.argmax(bad)) + 1}); "
                         "remove them.")
    labels = None
    if width == 3:
        lab = values[:, 2]
        if not np.all(lab == np.round(lab)) or lab.min() < -1:
            raise ValueError("The third column must hold whole-number labels 0, 1, 2, ... (blank: not known)")
        labels = lab.astype(np.int64) if (lab >= 0).any() else None
    return values[:, :2].astype(np.float32), labels
