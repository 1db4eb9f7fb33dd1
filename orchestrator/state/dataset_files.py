"""`read_dataset`: Parquet and JSON Lines files (one table per file, named by the file's stem) or
directories of them -> a checked `Dataset`, or a `DatasetError` naming file, row and field.

Files are read in batches by pyarrow and every check is vectorised, so a large file costs about
what reading it costs. A JSONL file is parsed line by line in Python only when pyarrow refuses it
(a string where a number belongs, a number too large...), to say on which line. The schema and
the checks are documented for users in docs/DATA.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq
from tqdm import tqdm

from orchestrator.state.dataset import DEFAULTS, TABLES, Dataset
from orchestrator.state.dataset_checks import KnownIds, check_tables, narrow
from orchestrator.state.dataset_problems import Problems, Source
from phoenix.world import schema as world

SUFFIXES = (".parquet", ".jsonl")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_BATCH_ROWS = 1 << 16
#: Columns only a synthetic world has (ground truth, derived counts): ignored in a world directory.
_WORLD_ONLY = {
    name: set(world.TABLES[name].names) - set(TABLES[name].names) for name in world.TABLES
}


def read_dataset(
    paths: Iterable[str | Path],
    *,
    known: KnownIds | None = None,
    now_ms: int | None = None,
    fallback_now_ms: int | None = None,
    progress: bool = False,
) -> Dataset:
    """Read and check the tables in `paths` (files, or directories of `*.parquet` / `*.jsonl`
    files; a world directory of `phoenix world` is one). `known` says which user and post ids a
    store already holds (rows may refer to them, and must not add them again). `now_ms` is the
    dataset's "now" (default: a world's `now_ms`, else None = the loader's clock); nothing may
    happen after it; `fallback_now_ms` (e.g. a store's clock) is what the checks use when neither
    is known. Raises `DatasetError` listing the first problems and counting all."""
    problems = Problems()
    files, world_now = _files(paths, problems)
    now = now_ms if now_ms is not None else world_now
    wide: dict[str, pa.Table] = {}
    sources: dict[str, Source] = {}
    for name, (source, in_world) in files.items():
        table = _read(source, name, in_world, problems, progress)
        if table is not None:
            wide[name], sources[name] = table, source
    problems.raise_if_any()
    checks_now = now if now is not None else fallback_now_ms
    wide = check_tables(wide, sources, known or KnownIds(), checks_now, problems)
    problems.raise_if_any()
    return Dataset({name: narrow(name, t) for name, t in wide.items()}, now_ms=now)


def _files(
    paths: Iterable[str | Path], problems: Problems
) -> tuple[dict[str, tuple[Source, bool]], int | None]:
    """Table name -> (its file, whether it is in a world directory), and a world's now_ms."""
    found: dict[str, tuple[Source, bool]] = {}
    now_ms: int | None = None

    def take(path: Path, in_world: bool) -> None:
        name = path.stem
        if path.suffix not in SUFFIXES:
            problems.add(str(path), None, None, "not a .parquet or .jsonl file")
        elif name not in TABLES:
            problems.add(
                str(path), None, None, f"unknown table {name!r}; tables: {', '.join(TABLES)}"
            )
        elif name in found:
            problems.add(str(path), None, None, f"table {name!r} is also in {found[name][0].name}")
        else:
            found[name] = (Source(str(path), path, jsonl=path.suffix == ".jsonl"), in_world)

    for path in map(Path, paths):
        if path.is_dir():
            meta = path / world.META_FILE
            in_world = meta.is_file()
            if in_world:
                world_now = _world_now(meta, problems)
                if world_now is not None:
                    now_ms = max(now_ms or world_now, world_now)
            entries = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file())
            if not entries:
                problems.add(str(path), None, None, "holds no .parquet or .jsonl file")
            for entry in entries:
                take(entry, in_world)
        elif path.is_file():
            take(path, False)
        else:
            problems.add(str(path), None, None, "no such file or directory")
    return found, now_ms


def _world_now(meta: Path, problems: Problems) -> int | None:
    try:
        now = json.loads(meta.read_text(encoding="utf-8")).get("now_ms")
    except (OSError, ValueError, AttributeError) as exc:
        problems.add(str(meta), None, None, f"cannot read it: {exc}")
        return None
    if not isinstance(now, int) or isinstance(now, bool):
        problems.add(str(meta), None, "now_ms", f"expected an integer, got {now!r}")
        return None
    return now


def _read(
    source: Source, name: str, in_world: bool, problems: Problems, progress: bool
) -> pa.Table | None:
    """One file as a table of `WIDE` types in `TABLES[name]`'s column order, defaults filled."""
    ignored = _WORLD_ONLY[name] if in_world else set()
    bad: dict[str, np.ndarray] = {}
    try:
        if source.jsonl:
            table = _read_jsonl(source, name, progress)
            if table is None:  # pyarrow refused it: find out where, line by line
                table, bad = _parse_jsonl(source, name, problems)
        else:
            table = _read_parquet(source, progress)
    except (OSError, pa.ArrowException) as exc:
        problems.add(source, None, None, f"cannot read it: {exc}")
        return None
    schema = TABLES[name]
    for column in table.column_names:
        if column not in schema.names and column not in ignored:
            present = np.flatnonzero(~table.column(column).is_null().to_numpy(zero_copy_only=False))
            row = int(source.rows(present[:1])[0]) if len(present) else None
            problems.add(
                source, row, column, f"unknown column; {name} has {', '.join(schema.names)}"
            )
    columns = []
    for field in schema:
        if field.name not in table.column_names:
            if field.name not in DEFAULTS.get(name, {}):
                problems.add(source, None, field.name, "required column is missing")
                return None
            columns.append(_default(name, field.name, table.num_rows))
            continue
        column = _coerce(table.column(field.name), field, source, problems)
        if column is None:
            return None
        columns.append(_fill(name, field.name, column, source, problems, bad.get(field.name)))
    return pa.table(columns, names=schema.names)


def _read_parquet(source: Source, progress: bool) -> pa.Table:
    parquet = pq.ParquetFile(source.path)
    batches = []
    with tqdm(
        total=parquet.metadata.num_rows,
        desc=source.path.name,
        unit="rows",
        unit_scale=True,
        disable=not progress,
    ) as bar:
        for batch in parquet.iter_batches(batch_size=_BATCH_ROWS):
            batches.append(batch)
            bar.update(batch.num_rows)
    return pa.Table.from_batches(batches, schema=parquet.schema_arrow)


def _read_jsonl(source: Source, name: str, progress: bool) -> pa.Table | None:
    """The file parsed by pyarrow in blocks, or None when pyarrow refuses some value."""
    options = pj.ParseOptions(
        explicit_schema=pa.schema([(f.name, _wide_of(f)) for f in TABLES[name]]),
        unexpected_field_behavior="infer",
    )
    if source.path.stat().st_size == 0:
        return pa.table({})
    batches = []
    try:
        reader = pj.open_json(source.path, parse_options=options)
        with tqdm(desc=source.path.name, unit="rows", unit_scale=True, disable=not progress) as bar:
            for batch in reader:
                batches.append(batch)
                bar.update(batch.num_rows)
    except pa.ArrowInvalid:
        return None
    return pa.Table.from_batches(batches, schema=reader.schema)


def _parse_jsonl(
    source: Source, name: str, problems: Problems
) -> tuple[pa.Table, dict[str, np.ndarray]]:
    """The slow path: each line parsed by Python, each bad value reported with its line. Returns
    the table (bad values as nulls) and, per column, the rows already reported."""
    schema = TABLES[name]
    kinds = {f.name: _kind(f.type) for f in schema}
    values: dict[str, list[object]] = {c: [] for c in kinds}
    bad: dict[str, list[int]] = {c: [] for c in kinds}
    extra: dict[str, list[object]] = {}
    lines: list[int] = []
    with open(source.path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = len(lines)
            lines.append(number)
            try:
                obj = json.loads(line)
            except ValueError as exc:
                problems.add(source, number, None, f"not valid JSON: {exc}")
                obj = None
            if not isinstance(obj, dict):
                if obj is not None:
                    problems.add(source, number, None, "expected a JSON object")
                for column in kinds:
                    values[column].append(None)
                    bad[column].append(row)
                continue
            for column in obj.keys() - kinds.keys():
                extra.setdefault(column, [None] * row)
            for column, kind in kinds.items():
                value, error = _cell(obj.get(column), kind)
                if error:
                    problems.add(source, number, column, error)
                    bad[column].append(row)
                values[column].append(value)
            for column, cells in extra.items():
                cells.append(True if column in obj else None)
    source.lines = np.array(lines, np.int64)
    present = {c: v for c, v in values.items() if bad[c] or any(x is not None for x in v)}
    arrays = {c: pa.array(v, _wide_of(schema.field(c))) for c, v in present.items()}
    arrays |= {c: pa.array(v, pa.bool_()) for c, v in extra.items()}
    return pa.table(arrays), {c: np.array(rows, np.int64) for c, rows in bad.items()}


def _kind(t: pa.DataType) -> str:
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "str"
    if pa.types.is_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_large_list(t):
        return "list" if pa.types.is_integer(t.value_type) else "other"
    return "other"


_EXPECTED = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
    "list": "a list of integers",
}


def _cell(value: object, kind: str) -> tuple[object, str | None]:
    """A JSON value for a column of `kind` -> (the value, or None, and an error message)."""
    if value is None:
        return None, None
    if kind == "list":
        if not isinstance(value, list):
            return None, f"expected {_EXPECTED[kind]}, got {_show(value)}"
        codes = [_cell(v, "int") for v in value]
        errors = [e for _, e in codes if e] + ["null" for v, e in codes if v is None and not e]
        return (None, f"{errors[0]} in the list") if errors else ([v for v, _ in codes], None)
    if isinstance(value, bool):
        return (value, None) if kind == "bool" else (None, _wrong(kind, value))
    if kind == "int" and isinstance(value, (int, float)):
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            return None, _wrong(kind, value)
        if not _INT64_MIN <= value <= _INT64_MAX:
            return None, f"{_show(value)} is out of the 64-bit integer range"
        return int(value), None
    if kind == "float" and isinstance(value, (int, float)):
        return float(value), None
    if kind == "str" and isinstance(value, str):
        return value, None
    return None, _wrong(kind, value)


def _wrong(kind: str, value: object) -> str:
    return f"expected {_EXPECTED[kind]}, got {_show(value)}"


def _show(value: object) -> str:
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, (list, dict)):
        return "a list" if isinstance(value, list) else "an object"
    return json.dumps(value)


def _coerce(
    column: pa.ChunkedArray, field: pa.Field, source: Source, problems: Problems
) -> pa.ChunkedArray | None:
    """A column of whatever type the file has -> its `WIDE` type; None (reported) when its type
    cannot hold the field's values. Integral floats are accepted as integers."""
    want = _kind(field.type)
    have = _kind(column.type)
    if pa.types.is_null(column.type):
        return pa.nulls(len(column), _wide_of(field)).cast(_wide_of(field))
    if want == "int" and have == "float":
        values = column.to_numpy(zero_copy_only=False)
        nulls = column.is_null().to_numpy(zero_copy_only=False)
        with np.errstate(invalid="ignore"):
            fine = np.isfinite(values) & (values == np.round(values))
            fine &= (values >= -(2.0**63)) & (values < 2.0**63)
        wrong = ~fine & ~nulls
        problems.rows(source, wrong, field.name, lambda i: _wrong("int", float(values[i])))
        kept = np.where(wrong | nulls, 0, values).astype(np.int64)
        return pa.chunked_array([pa.array(kept, mask=nulls)])  # wrong ones stop the load
    if want == "int" and have == "int" and column.type == pa.uint64():
        values = column.to_numpy(zero_copy_only=False)
        wrong = np.asarray(values > np.uint64(_INT64_MAX))
        problems.rows(
            source, wrong, field.name, lambda i: f"{values[i]} is out of the 64-bit integer range"
        )
        return column.cast(pa.int64(), safe=False)  # wrong ones stop the load
    if want == have or (want == "float" and have == "int"):
        return column.cast(_wide_of(field))
    problems.add(
        source, None, field.name, f"column has type {column.type}, expected {_EXPECTED[want]}"
    )
    return None


def _wide_of(field: pa.Field) -> pa.DataType:
    kind = _kind(field.type)
    return {
        "int": pa.int64(),
        "float": pa.float64(),
        "bool": pa.bool_(),
        "str": pa.string(),
        "list": pa.list_(pa.int64()),
    }[kind]


def _default(table: str, column: str, rows: int) -> pa.Array:
    field = TABLES[table].field(column)
    return pa.repeat(pa.scalar(DEFAULTS[table][column], _wide_of(field)), rows)


def _fill(
    table: str,
    column: str,
    values: pa.ChunkedArray,
    source: Source,
    problems: Problems,
    reported: np.ndarray | None,
) -> pa.ChunkedArray:
    """Nulls (a JSON null, a missing key) take the column's default; in a required column they
    are problems (except where the value was already reported as wrong)."""
    if not values.null_count:
        return values
    if column in DEFAULTS.get(table, {}):
        default = pa.scalar(DEFAULTS[table][column], values.type)
        return pc.if_else(pc.is_null(values), default, values)
    if values.null_count == len(values) and not (reported is not None and len(reported)):
        problems.add(source, None, column, "required column is missing")
        return values
    nulls = values.is_null().to_numpy(zero_copy_only=False).copy()
    if reported is not None:
        nulls[reported] = False
    problems.rows(source, nulls, column, "missing value (the column is required)")
    return values  # not checked further: the problems stop the load before the value checks
