"""Property: corrupted files (truncated, a column dropped, dtypes flipped, NaN injected) give a clean
ScorePolicyError on load and a report from validation, never any other kind of crash."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.data.makers import write_robomimic, write_v3, write_v21, write_zarr

from scorepolicy.data.formats import load_dataset
from scorepolicy.data.validate import validate_dataset
from scorepolicy.errors import ScorePolicyError

FORMATS = ("v3", "v21", "zarr", "robomimic")
CORRUPTIONS = ("truncate", "drop", "dtype", "nan")


def _build(kind: str, root: Path) -> Path:
    makers = {"v3": write_v3, "v21": write_v21, "zarr": write_zarr}
    if kind == "robomimic":
        return write_robomimic(root / "demo.hdf5", lengths=(6, 5, 7))
    return makers[kind](root / ("ds.zarr" if kind == "zarr" else "ds"))


def _files(path: Path) -> list[Path]:
    return [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())


def _corrupt_parquet(path: Path, how: str, pick: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    name = table.column_names[pick % len(table.column_names)]
    if how == "drop":
        table = table.drop_columns([name])
    elif how == "dtype":
        new = pa.array([str(v) for v in table.column(name).to_pylist()])
        table = table.set_column(table.column_names.index(name), name, new)
    else:
        col = table.column(name)
        if not (pa.types.is_floating(col.type) or pa.types.is_fixed_size_list(col.type)):
            return
        values = np.array(col.to_pylist(), dtype=np.float64)
        values[pick % len(values)] = np.nan
        arr = (
            pa.array(values.astype(np.float32))
            if values.ndim == 1
            else pa.FixedSizeListArray.from_arrays(
                pa.array(values.astype(np.float32).ravel()), values.shape[1]
            )
        )
        table = table.set_column(table.column_names.index(name), name, arr)
    pq.write_table(table, path)


def _corrupt_json(path: Path, how: str, pick: int) -> None:
    if path.suffix == ".jsonl":
        lines = [json.loads(line) for line in path.read_text().splitlines() if line]
        row = lines[pick % len(lines)]
        key = sorted(row)[pick % len(row)]
        row[key] = "oops" if how == "dtype" else None
        if how == "drop":
            del row[key]
        path.write_text("\n".join(json.dumps(r) for r in lines))
        return
    obj = json.loads(path.read_text())
    if isinstance(obj, dict) and obj:
        key = sorted(obj)[pick % len(obj)]
        if how == "drop":
            del obj[key]
        else:
            obj[key] = "NaN" if how == "nan" else [1, "x"]
    path.write_text(json.dumps(obj))


def _corrupt_hdf5(path: Path, how: str, pick: int) -> None:
    import h5py

    with h5py.File(path, "a") as f:
        names: list[str] = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        name = names[pick % len(names)]
        if how == "drop":
            del f[name]
        elif how == "dtype":
            n = len(f[name])
            del f[name]
            f[name] = np.array([b"text"] * n)
        elif f[name].dtype.kind == "f":
            values = f[name][()]
            values.reshape(len(values), -1)[pick % len(values), 0] = np.nan
            f[name][...] = values


def _corrupt(path: Path, how: str, pick: int, fraction: float) -> None:
    files = _files(path)
    target = files[pick % len(files)]
    if how == "truncate":
        data = target.read_bytes()
        target.write_bytes(data[: int(len(data) * fraction)])
    elif target.suffix == ".parquet":
        _corrupt_parquet(target, how, pick)
    elif target.suffix in (".json", ".jsonl", ".zarray", ".zattrs", ".zgroup"):
        _corrupt_json(target, how, pick)
    elif target.suffix == ".hdf5":
        _corrupt_hdf5(target, how, pick)
    elif how == "drop":
        target.unlink()
    else:  # a zarr chunk: overwrite part of it with garbage of the same length
        data = bytearray(target.read_bytes())
        data[len(data) // 2 :] = bytes(len(data) - len(data) // 2)
        target.write_bytes(bytes(data))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(FORMATS),
    how=st.sampled_from(CORRUPTIONS),
    pick=st.integers(0, 10_000),
    fraction=st.floats(0.0, 0.95),
)
def test_corruption_gives_clean_errors_only(kind: str, how: str, pick: int, fraction: float) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="corrupt-"))
    try:
        path = _build(kind, workdir)
        _corrupt(path, how, pick, fraction)
        try:
            load_dataset(path)
            loaded = True
        except ScorePolicyError as exc:
            assert "Traceback" not in str(exc) and "\n" not in str(exc)
            loaded = False
        report = validate_dataset(path, horizon=2)
        assert all("\n" not in line for line in report.lines())
        if not loaded:
            assert not report.ok, f"load failed but validation found nothing ({kind}, {how})"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
