"""A record of the last set of batches that passed :func:`retrain.pipeline.dataset.load_batches`.

``retrain run`` on a week where nothing arrived should cost seconds, not the import of pandas
and the parsing of every batch.  Each successful ``load_batches`` writes, under ``.retrain/``
(untracked, local), a key over the dataset configuration, the checking code and the exact
bytes of every batch file, with each file's row count.  When the key still matches, the same
files under the same rules would pass the same checks with the same rows, so the trigger
check can compare row counts with production's without reading a single frame.  Any
difference (a byte, a file, a setting, a new version of the checks) misses, and the batches
are read and checked as before.  This module hashes bytes; it never imports pandas.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from retrain.core.config import DatasetConfig
from retrain.core.errors import DataError

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
RECORD = Path(".retrain") / "checked-batches.json"
# the rules the record vouches for: the checks, how a file is read, which files are read
_CHECKS = tuple(Path(__file__).with_name(n) for n in ("dataset.py", "batchread.py", "window.py"))

_SHA_MEMO: dict[tuple[str, int, int, int], str] = {}


def file_sha(path: Path) -> str:
    """sha256 of a file's bytes, remembered for this process while its size, mtime and inode
    stay the same (a run hashes each batch once)."""
    st = path.stat()
    memo_key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    sha = _SHA_MEMO.get(memo_key)
    if sha is None:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        sha = _SHA_MEMO[memo_key] = digest.hexdigest()
    return sha


def batch_files(cfg: DatasetConfig, root: Path) -> list[Path]:
    """The labelled batches, in name order (name them so that order is time order)."""
    folder = root / cfg.batches
    if not folder.is_dir():
        raise DataError(f"{cfg.batches}: directory not found (dataset.yaml: batches)")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in TABLE_SUFFIXES)
    if not files:
        raise DataError(f"{cfg.batches}: no .csv or .parquet batches found")
    return files


def key(cfg: DatasetConfig, root: Path) -> str:
    """One hash of the dataset configuration, the checking code and every batch's bytes."""
    digest = hashlib.sha256(cfg.model_dump_json().encode())
    for code in _CHECKS:
        digest.update(hashlib.sha256(code.read_bytes()).hexdigest().encode())
    for path in batch_files(cfg, root):
        rel = os.path.relpath(path, root)
        digest.update(f"\0{rel}\0{file_sha(path)}".encode())
    return digest.hexdigest()


def remember(root: Path, record_key: str, rows: dict[str, int]) -> None:
    """Record that the batches of ``record_key`` (taken before reading them) passed, with
    their rows; best effort: a read-only checkout just reads the batches again next time."""
    path = Path(root) / RECORD
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # a run and a verify at once
        tmp.write_text(json.dumps({"key": record_key, "rows": rows}, sort_keys=True))
        tmp.replace(path)
    except OSError:
        pass


def recall(cfg: DatasetConfig, root: Path) -> dict[str, int] | None:
    """Rows per batch file when the batches on disk are the last set that passed under the
    same rules (so they would pass again, with these rows); None when they must be read."""
    try:
        data: Any = json.loads((Path(root) / RECORD).read_text())
        if not isinstance(data, dict) or data.get("key") != key(cfg, root):
            return None
    except (OSError, ValueError, DataError):
        return None
    rows = data.get("rows")
    return {str(k): int(v) for k, v in rows.items()} if isinstance(rows, dict) else None


# --------------------------------------------------------------------------- read once
_SESSIONS: list[dict[Any, Any]] = []


@contextmanager
def read_once() -> Iterator[None]:
    """Share what passes over batch files learnt, and the rows they kept, until the block
    ends (``retrain run``: the trigger check, validate and train read each file once; see
    :mod:`retrain.pipeline.batchread`).  Entering it imports nothing."""
    _SESSIONS.append({})
    try:
        yield
    finally:
        _SESSIONS.pop()


def sharing() -> bool:
    return bool(_SESSIONS)


def session() -> dict[Any, Any] | None:
    """The innermost session's memo (None outside :func:`read_once`)."""
    return _SESSIONS[-1] if _SESSIONS else None
