"""The CFD norming workbook (``CFD 3.0 Norming Data and Codebook.xlsx``) joined onto CFD faces.

Each data sheet starts with a preamble; the first row holding a ``Model`` cell gives the variable
ids, and the rows below it are models. The U.S. sheets key models as ``AF-200`` (race, gender,
model number); the CFD-INDIA sheets as ``IF601-519`` (with the image number). Keys are compared
without punctuation or case, first with the image number and then without. Workbook columns keep
their variable ids; one that clashes with a face-table column is prefixed ``norming_``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import polars as pl

from engine.errors import InputError, require

log = logging.getLogger(__name__)

KEY = "Model"
SHEETS = {  # raters -> sheets joined (CFD and CFD-MR were normed by U.S. raters only)
    "us": ("CFD U.S. Norming Data", "CFD-MR U.S. Norming Data", "CFD-I U.S. Norming Data"),
    "india": ("CFD U.S. Norming Data", "CFD-MR U.S. Norming Data", "CFD-I INDIA Norming Data"),
}
HEADER_SEARCH_ROWS = 200


def model_key(text) -> str:
    return re.sub(r"[^0-9A-Z]", "", str(text).upper())


def _sheet_id(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.casefold())


def read_sheet(sheet, path: Path) -> list[dict]:
    """The model rows of one sheet as {variable id: value}, skipping the preamble."""
    rows = sheet.iter_rows(values_only=True)
    header = None
    for _, row in zip(range(HEADER_SEARCH_ROWS), rows):
        cells = ["" if c is None else str(c).strip() for c in row]
        if KEY in cells:
            header = cells
            break
    if header is None:
        raise InputError(f"{path}: sheet {sheet.title!r} has no header row with a {KEY!r} column")
    records = []
    for row in rows:
        record = {}
        for name, value in zip(header, row):
            if name and name not in record:
                record[name] = value.strip() if isinstance(value, str) else value
        if record.get(KEY) not in (None, ""):
            records.append(record)
    return records


def read_workbook(path: Path, raters: str) -> tuple[list[dict], list[str], list[str]]:
    """Model records of the sheets chosen for ``raters``; the sheets used and those missing."""
    if not path.is_file():
        raise InputError(f"norming workbook {path} not found")
    openpyxl = require("openpyxl", "reading the CFD norming workbook")
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises zipfile, KeyError and its own errors on bad files
        raise InputError(f"{path}: not a readable .xlsx workbook ({exc})") from exc
    try:
        present = {_sheet_id(name): name for name in book.sheetnames}
        used = [present[_sheet_id(s)] for s in SHEETS[raters] if _sheet_id(s) in present]
        missing = [s for s in SHEETS[raters] if _sheet_id(s) not in present]
        if not used:
            raise InputError(f"{path}: none of the CFD norming sheets {list(SHEETS[raters])}; "
                             f"it has {book.sheetnames}")
        records = []
        for name in used:
            records += [dict(r, norming_sheet=name) for r in read_sheet(book[name], path)]
    finally:
        book.close()
    return records, used, missing


def _column(values: list) -> pl.Series:
    present = [v for v in values if v is not None and v != ""]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return pl.Series([None if v in (None, "") else float(v) for v in values], dtype=pl.Float64)
    return pl.Series([None if v in (None, "") else str(v) for v in values], dtype=pl.Utf8)


def norming_frame(records: list[dict], taken: set[str]) -> pl.DataFrame:
    """One row per workbook model keyed by ``_join``; clashing names prefixed ``norming_``."""
    names = list(dict.fromkeys(n for r in records for n in r))
    columns = {}
    for name in names:
        target = "norming_model" if name == KEY else name
        target = f"norming_{target}" if target in taken else target
        columns[target] = _column([r.get(name) for r in records])
    frame = pl.DataFrame(columns).with_columns(_join=pl.Series([model_key(r[KEY]) for r in records]))
    duplicated = frame.filter(pl.col("_join").is_duplicated())["norming_model"].unique().sort()
    if len(duplicated):
        log.warning("norming workbook: models listed twice, keeping the first: %s", duplicated.to_list()[:5])
    return frame.unique("_join", keep="first", maintain_order=True)


def join_norming(faces: pl.DataFrame, path: Path, raters: str) -> tuple[pl.DataFrame, dict]:
    """CFD faces with the norming columns of their model (null where the workbook lacks it)."""
    records, used, missing = read_workbook(path, raters)
    if missing:
        log.warning("%s: sheets %s not found; their models get no norming data", path, missing)
    norms = norming_frame(records, set(faces.columns))
    known = set(norms["_join"].to_list())
    short = faces["model"].str.replace_all("[^0-9A-Za-z]", "").str.to_uppercase().alias("short")
    full = (short + faces["image_number"]).alias("full")
    join = pl.select(pl.when(full.is_in(list(known))).then(full).otherwise(short)).to_series()
    joined = faces.with_columns(_join=join).join(norms, on="_join", how="left", maintain_order="left")
    matched = joined["norming_sheet"].is_not_null()
    unmatched = sorted(set(joined.filter(~matched)["model"].to_list()))
    if unmatched:
        log.warning("%s: %d models have no norming row, e.g. %s", path, len(unmatched), unmatched[:5])
    details = {"path": str(path), "raters": raters, "sheets": used, "sheets_missing": missing,
               "matched": int(matched.sum()), "unmatched_models": unmatched}
    return joined.drop("_join"), details
