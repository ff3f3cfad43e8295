"""What was learnt from each batch file, kept under ``.retrain/batches/`` so a later run need
not read the file again: its facts (rows, time range), its column profiles (whole file, and
slices of it by time) and the production model's output profiles on those slices.

The store is a **cache**: every entry is keyed by the sha256 of the file's bytes and by
:func:`rules_key` (the dataset settings that change what a check or a profile gives, and the
source of the modules that compute them), written atomically, and read defensively: an entry
that is missing, torn or unreadable is simply computed again from the batch.  Deleting
``.retrain/`` costs time, never correctness.  It is local (``.gitignore``d): a fresh clone or
CI runner rebuilds what it needs on its first run (docs/decisions.md, "Bounded-memory data
path").
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from retrain.core.config import DatasetConfig
from retrain.pipeline.batchcheck import file_sha
from retrain.pipeline.profiles import Profile

__all__ = ["STORE", "Store", "StoredFacts", "file_sha", "rules_key"]

STORE = Path(".retrain") / "batches"
#: the modules whose code decides what a check or a profile gives
_CODE = ("dataset.py", "batchread.py", "profiles.py")
#: dataset settings that do not change any file's facts, checks or profiles
_NOT_RULES = {"name", "batches", "holdout", "train_window_days", "min_rows", "subgroups"}


def rules_key(cfg: DatasetConfig) -> str:
    """A hash of what decides a batch's checks and profiles (settings and code)."""
    digest = hashlib.sha256(
        json.dumps(cfg.model_dump(exclude=_NOT_RULES), sort_keys=True, default=str).encode()
    )
    here = Path(__file__).parent
    for name in _CODE:
        digest.update(hashlib.sha256((here / name).read_bytes()).digest())
    return digest.hexdigest()[:16]


@dataclass
class StoredFacts:
    """A batch file's facts once it was read and passed its checks."""

    rows: int
    tmin: int | None  # nanoseconds since the epoch, UTC
    tmax: int | None


def _slice_name(window: tuple[int, int] | None) -> str:
    return "all" if window is None else f"{window[0]}-{window[1]}"


class Store:
    """The per-file entries of one project and one set of rules."""

    def __init__(self, root: Path, cfg: DatasetConfig) -> None:
        self.base = Path(root) / STORE
        self.rules = rules_key(cfg)

    def _dir(self, sha: str) -> Path:
        return self.base / f"{sha[:32]}-{self.rules}"

    def _write(self, path: Path, write: Any) -> None:
        """Atomically (temp file + rename); best effort: a read-only checkout just reads
        the batch again next time."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            write(tmp)
            tmp.replace(path)
        except OSError:
            pass

    # ----------------------------------------------------------------- facts
    def facts(self, sha: str) -> StoredFacts | None:
        try:
            data = json.loads((self._dir(sha) / "facts.json").read_text())
            return StoredFacts(
                rows=int(data["rows"]),
                tmin=None if data["tmin"] is None else int(data["tmin"]),
                tmax=None if data["tmax"] is None else int(data["tmax"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put_facts(self, sha: str, facts: StoredFacts) -> None:
        text = json.dumps(asdict(facts), sort_keys=True)
        self._write(self._dir(sha) / "facts.json", lambda p: p.write_text(text))

    # ----------------------------------------------------------------- profiles
    def _profile_path(self, sha: str, name: str) -> Path:
        return self._dir(sha) / f"{name}.parquet"

    def _get(self, path: Path) -> Profile | None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return Profile.from_arrow(pq.read_table(path))
        except (OSError, ValueError, KeyError, TypeError, pa.ArrowException):
            return None

    def _put(self, path: Path, profile: Profile) -> None:
        import pyarrow.parquet as pq

        table = profile.to_arrow()
        self._write(path, lambda p: pq.write_table(table, p))

    def profile(self, sha: str, window: tuple[int, int] | None = None) -> Profile | None:
        """The file's column profile (``window``: only its rows with lo <= time < hi)."""
        return self._get(self._profile_path(sha, "profile-" + _slice_name(window)))

    def put_profile(
        self, sha: str, profile: Profile, window: tuple[int, int] | None = None
    ) -> None:
        self._put(self._profile_path(sha, "profile-" + _slice_name(window)), profile)

    def outputs(self, sha: str, model: str, window: tuple[int, int] | None) -> Profile | None:
        """The profile of a model's outputs (by its artifact's sha256) on the file's rows."""
        return self._get(self._profile_path(sha, f"outputs-{model[:16]}-{_slice_name(window)}"))

    def put_outputs(
        self, sha: str, model: str, window: tuple[int, int] | None, profile: Profile
    ) -> None:
        self._put(self._profile_path(sha, f"outputs-{model[:16]}-{_slice_name(window)}"), profile)
