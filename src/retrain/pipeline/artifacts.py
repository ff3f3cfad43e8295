"""Model artifacts: saved with skops (no code runs on load), verified by sha256 before loading.

The train stage writes ``artifacts/train/model.skops`` as a DVC output, so the DVC remote
holds every version by its md5.  A version is fetched by that md5 from the local DVC cache or
the remote (no git checkout of old commits needed), its sha256 is compared with the registry,
and only then is it deserialised, with skops' allow-list of types.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import skops.io as sio

from retrain.core.errors import ArtifactError, ExternalCommandError
from retrain.core.registry import ArtifactRef

MODEL_FORMAT = "skops"

# Types skops does not trust by default that our estimators legitimately contain.  Reviewed
# by hand: they are scikit-learn's compiled tree structures, which skops reconstructs from
# arrays without running code.  Anything else found in an artifact is refused.
TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "numpy.dtype",
)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def untrusted_types(path: Path) -> list[str]:
    """Types in the file outside skops' defaults and our allow-list."""
    try:
        found = sio.get_untrusted_types(file=path)
    except Exception as exc:  # skops raises many kinds on a corrupt zip
        raise ArtifactError(f"{path}: not a readable skops file ({type(exc).__name__})") from None
    return [t for t in found if t not in TRUSTED_TYPES]


def save_model(model: Any, path: Path) -> dict[str, Any]:
    """Write ``model`` with skops and return its reference (path, format, sha256, md5, size)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    sio.dump(model, tmp)
    bad = untrusted_types(tmp)
    if bad:
        tmp.unlink()
        raise ArtifactError(
            f"{path}: the model contains types not on the reviewed allow-list {bad}; "
            "review them and add to retrain.pipeline.artifacts.TRUSTED_TYPES"
        )
    tmp.replace(path)
    return describe(path)


def describe(path: Path) -> dict[str, Any]:
    return {
        "format": MODEL_FORMAT,
        "sha256": sha256_of(path),
        "md5": md5_of(path),
        "size_bytes": path.stat().st_size,
    }


def load_verified(path: Path, sha256: str, *, display: str | None = None) -> Any:
    """Deserialise a model file only after its sha256 matches the registry's."""
    display = display or str(path)
    if not path.is_file():
        raise ArtifactError(f"{display}: artifact file not found")
    actual = sha256_of(path)
    if actual != sha256:
        raise ArtifactError(
            f"{display}: sha256 mismatch (registry says {sha256[:12]}…, file has {actual[:12]}…); "
            "refusing to load"
        )
    with path.open("rb") as fh:
        head = fh.read(4)
    if head != b"PK\x03\x04":
        raise ArtifactError(f"{display}: unknown artifact format (expected a skops zip file)")
    bad = untrusted_types(path)
    if bad:
        raise ArtifactError(f"{display}: artifact contains untrusted types {bad}; refusing to load")
    found = sio.get_untrusted_types(file=path)
    return sio.load(path, trusted=list(found))


# ------------------------------------------------------------------------ fetching
# Objects are addressed by md5 in DVC's content-addressed cache and remote, so any version can
# be fetched without checking out the commit that produced it.  DVC's repo API is used for
# the remote (``Repo.cloud.get_remote_odb``): the same configuration, credentials and
# filesystems as ``dvc pull``.


def _repo(root: Path) -> Any:
    from dvc.repo import Repo

    return Repo(str(root))


def _remote_odb(root: Path) -> Any:
    from dvc.config import NoRemoteError

    try:
        return _repo(root).cloud.get_remote_odb(None, "fetch")
    except NoRemoteError:
        raise ArtifactError(
            ".dvc/config: no default DVC remote; artifacts are fetched from it "
            "(dvc remote add -d <name> <url>)"
        ) from None


def cache_path(root: Path, md5: str) -> Path:
    """Where DVC 3 keeps an object of this md5 in the repository's cache."""
    return Path(_repo(root).cache.local.path) / md5[:2] / md5[2:]


def in_remote(root: Path, ref: ArtifactRef) -> bool:
    """True when the default DVC remote holds the artifact's object."""
    try:
        return bool(_remote_odb(root).exists(ref.md5))
    except ArtifactError:
        raise
    except Exception as exc:
        raise ExternalCommandError(
            f"DVC remote cannot be read: {type(exc).__name__}: {exc}"
        ) from None


def fetch(root: Path, ref: ArtifactRef, version: str) -> Path:
    """A local, verified copy of a registered artifact, fetched from the DVC remote if needed.

    Returns a path under ``.retrain/artifacts/`` named by sha256; the file there has been
    checked against ``ref.sha256``.
    """
    root = Path(root)
    store = root / ".retrain" / "artifacts"
    target = store / f"{ref.sha256}.{ref.format or MODEL_FORMAT}"
    if target.is_file() and sha256_of(target) == ref.sha256:
        return target
    store.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".part")
    source = cache_path(root, ref.md5)
    if source.is_file():
        shutil.copyfile(source, tmp)
    else:
        odb = _remote_odb(root)
        if not odb.exists(ref.md5):
            raise ArtifactError(
                f"registry.yaml: version {version}: artifact md5 {ref.md5} is in neither the "
                "DVC cache nor the DVC remote"
            )
        odb.fs.get_file(odb.oid_to_path(ref.md5), str(tmp))
    actual = sha256_of(tmp)
    if actual != ref.sha256:
        tmp.unlink()
        raise ArtifactError(
            f"registry.yaml: version {version}: artifact sha256 mismatch (registry "
            f"{ref.sha256[:12]}…, stored object {actual[:12]}…); refusing to use it"
        )
    tmp.replace(target)
    return target
