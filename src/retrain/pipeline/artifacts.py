"""Model artifacts: saved with skops (no code runs on load), verified by sha256 before loading.

The train stage writes ``artifacts/train/model.skops`` as a DVC output, so the DVC remote
holds every version by its md5.  A version is fetched by that md5 from the local DVC cache or
the remote (no git checkout of old commits needed), its sha256 is compared with the registry,
and only then is it deserialised, with skops' allow-list of types.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrain.core.config import Config
from retrain.core.errors import ArtifactError, ExternalCommandError, RemoteError, RetrainError
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
    # The gradient-boosting built-ins (pipeline/boosting.py).  Their boosters restore from
    # the library's own model format (LightGBM's model text, XGBoost's UBJSON bytes), parsed
    # by the library, not unpickled; the estimators around them hold plain parameters.
    "lightgbm.sklearn.LGBMClassifier",
    "lightgbm.sklearn.LGBMRegressor",
    "lightgbm.basic.Booster",
    "collections.OrderedDict",  # LightGBM's record of its parameters
    "xgboost.sklearn.XGBClassifier",
    "xgboost.sklearn.XGBRegressor",
    "xgboost.core.Booster",
    "retrain.pipeline.boosting.LabelEncoded",  # our labels <-> class indices wrapper
)


def _sio() -> Any:
    """``skops.io``, imported on first use: it imports scikit-learn and scipy (seconds), which
    a run where nothing fired, the validate stage and the release commands do not need."""
    import skops.io

    return skops.io


def sha256_of(path: Path) -> str:
    """The file's sha256 (hex), read in chunks: a model or a batch file of any size."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def md5_of(path: Path) -> str:
    """The file's md5 (hex), as DVC names it in its cache and remote (not for security)."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()


def _types_in(path: Path) -> list[str]:
    """Every type in the file that skops does not trust by default."""
    try:
        return list(_sio().get_untrusted_types(file=path))
    except Exception as exc:  # skops raises many kinds on a corrupt zip
        raise ArtifactError(f"{path}: not a readable skops file ({type(exc).__name__})") from None


def _outside(found: list[str], trusted: Sequence[str]) -> list[str]:
    allowed = set(TRUSTED_TYPES) | set(trusted)
    return [t for t in found if t not in allowed]


def untrusted_types(path: Path, trusted: Sequence[str] = ()) -> list[str]:
    """Types in the file outside skops' defaults, our allow-list and ``trusted``."""
    return _outside(_types_in(path), trusted)


def trusted_types(extra: Sequence[str] = ()) -> list[str]:
    """The built-in allow-list plus ``configs/model.yaml: trusted_types`` (for MLflow too)."""
    return list(dict.fromkeys([*TRUSTED_TYPES, *extra]))


def save_model(model: Any, path: Path, trusted: Sequence[str] = ()) -> dict[str, Any]:
    """Write ``model`` with skops and return its reference (path, format, sha256, md5, size).

    A model containing a type outside the allow-list (built-in + ``trusted``) is refused
    before anything is saved, with the line to add to ``configs/model.yaml``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    try:
        _sio().dump(model, tmp)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise ArtifactError(
            f"{path}: the model cannot be saved with skops ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    bad = untrusted_types(tmp, trusted)
    if bad:
        tmp.unlink()
        raise ArtifactError(
            f"configs/model.yaml: trusted_types: the model contains type {bad[0]!r}, which is "
            f"not trusted; review it, then add `  - {bad[0]}` under trusted_types"
            + (f" (and {len(bad) - 1} more: {bad[1:]})" if len(bad) > 1 else "")
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


def check_bytes(path: Path, sha256: str, *, display: str | None = None) -> None:
    """Refuse a file that is missing, is not the registry's bytes (sha256) or is not a skops
    zip file; nothing is deserialised (see :func:`load_verified` for that)."""
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


def load_verified(
    path: Path,
    sha256: str,
    *,
    trusted: Sequence[str] = (),
    code_root: Path | None = None,
    display: str | None = None,
) -> Any:
    """Deserialise a model file only after its sha256 matches the registry's.

    ``trusted`` are the extra types ``configs/model.yaml: trusted_types`` allows; any other
    type outside skops' defaults and :data:`TRUSTED_TYPES` is refused.  ``code_root`` (the
    repository root) is put on ``sys.path`` while loading, for models that reference the
    fork's own code (``pipeline: model:build``).  Prefer :func:`load_for_config`.
    """
    display = display or str(path)
    check_bytes(path, sha256, display=display)
    key = (sha256, tuple(trusted), str(code_root))
    if _shared is not None and key in _shared:
        return _shared[key]
    found = _types_in(path)
    bad = _outside(found, trusted)
    if bad:
        raise ArtifactError(
            f"{display}: artifact contains untrusted types {bad}; refusing to load "
            "(configs/model.yaml: trusted_types lists the reviewed ones)"
        )
    if code_root is None:
        model = _sio().load(path, trusted=found)
    else:
        from retrain.pipeline.estimators import code_on_path

        with code_on_path(code_root):
            try:
                model = _sio().load(path, trusted=found)
            except (ImportError, AttributeError) as exc:
                missing = getattr(exc, "name", None) or ""
                hint = (
                    "; install the `boost` extra (.ci/install --extra boost)"
                    if missing.split(".")[0] in ("lightgbm", "xgboost")
                    else ""
                )
                raise ArtifactError(
                    f"{display}: the model refers to code that is not importable here "
                    f"({type(exc).__name__}: {exc}){hint}"
                ) from None
    if _shared is not None:
        _shared[key] = model
    return model


_shared: dict[tuple[str, tuple[str, ...], str], Any] | None = None


@contextmanager
def shared_loads() -> Iterator[None]:
    """Within, a verified artifact is deserialised once per sha256 and the model object
    shared: ``retrain run`` needs production in the triggers, the evaluate stage and the
    gates, and the candidate in evaluate and the gates.  The file's sha256 is still checked
    on every load.  Callers only predict with the models they get."""
    global _shared
    outer = _shared
    _shared = {} if outer is None else outer
    try:
        yield
    finally:
        _shared = outer


def load_for_config(cfg: Config, path: Path, sha256: str, *, display: str | None = None) -> Any:
    """:func:`load_verified` with the trusted types and code root of this repository's config.

    Every load goes through here (evaluate, gates, triggers, predict, promote, verify, serve).
    """
    return load_verified(
        path, sha256, trusted=cfg.model.trusted_types, code_root=cfg.root, display=display
    )


# ------------------------------------------------------------------------ fetching
# Objects are addressed by md5 in DVC's content-addressed cache and remote, so any version can
# be fetched without checking out the commit that produced it.  DVC's repo API is used for
# the remote (``Repo.cloud.get_remote_odb``): the same configuration, credentials and
# filesystems as ``dvc pull``.


def _repo(root: Path) -> Any:
    from dvc.repo import Repo

    return Repo(str(root))


@dataclass
class Remote:
    """The default DVC remote: its object database, name and URL (for messages)."""

    odb: Any
    name: str
    url: str

    def __str__(self) -> str:
        return f"DVC remote {self.name!r} ({self.url})"

    def object_path(self, md5: str) -> str:
        return str(self.odb.oid_to_path(md5))

    def object_url(self, md5: str) -> str:
        path = self.object_path(md5)
        try:
            return str(self.odb.fs.unstrip_protocol(path))
        except Exception:
            return path


def _remote(root: Path) -> Remote:
    from dvc.config import NoRemoteError

    repo = _repo(root)
    try:
        odb = repo.cloud.get_remote_odb(None, "fetch")
    except NoRemoteError:
        raise ArtifactError(
            ".dvc/config: no default DVC remote; artifacts are fetched from it "
            "(dvc remote add -d <name> <url>)"
        ) from None
    name = str(repo.config.get("core", {}).get("remote") or "default")
    url = str(repo.config.get("remote", {}).get(name, {}).get("url") or odb.path)
    return Remote(odb=odb, name=name, url=url)


def _remote_odb(root: Path) -> Any:
    return _remote(root).odb


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


def _missing_bucket(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "bucket" in text or "container" in text


def remote_failure(remote: Remote, exc: BaseException) -> RetrainError:
    """One line for a failure of the DVC remote: credentials and a missing bucket are
    configuration (exit 2), anything else (network, server errors) is exit 1."""
    if isinstance(exc, PermissionError):
        return RemoteError(
            f"{remote}: access denied ({_one_line(exc)}); check the remote's credentials "
            "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or .dvc/config.local)"
        )
    if isinstance(exc, FileNotFoundError) and _missing_bucket(exc):
        bucket = remote.url.split("://", 1)[-1].split("/", 1)[0]
        return RemoteError(
            f"{remote}: bucket {bucket!r} does not exist ({_one_line(exc)}); check the "
            "remote's url in .dvc/config"
        )
    return ExternalCommandError(f"{remote} cannot be read: {type(exc).__name__}: {_one_line(exc)}")


def check_remote(root: Path) -> None:
    """Raise one line when the default remote cannot be listed (credentials, bucket)."""
    remote = _remote(root)
    try:
        remote.odb.fs.ls(remote.odb.path)
    except FileNotFoundError as exc:
        if _missing_bucket(exc):
            raise remote_failure(remote, exc) from None
        # an existing bucket whose prefix holds nothing yet: usable
    except Exception as exc:
        raise remote_failure(remote, exc) from None


def cache_path(root: Path, md5: str) -> Path:
    """Where DVC 3 keeps an object of this md5 in the repository's cache."""
    return Path(_repo(root).cache.local.path) / md5[:2] / md5[2:]


def store(root: Path, path: Path, md5: str) -> None:
    """Put a model file in the repository's DVC cache and default remote under its ``md5``
    (what ``dvc push`` does for a stage output; the drill registers its bad versions so)."""
    from dvc_objects.fs.local import LocalFileSystem

    cache = cache_path(root, md5)
    cache.parent.mkdir(parents=True, exist_ok=True)
    if not cache.exists():
        shutil.copyfile(path, cache)
    _remote_odb(root).add(str(path), LocalFileSystem(), md5)


def _object_exists(remote: Remote, md5: str) -> bool:
    # ``odb.exists`` answers False on a denied request; ``info`` raises what happened.
    try:
        remote.odb.fs.info(remote.object_path(md5))
    except FileNotFoundError as exc:
        if _missing_bucket(exc):
            raise remote_failure(remote, exc) from None
        return False
    except Exception as exc:
        raise remote_failure(remote, exc) from None
    return True


def _as_ref(ref: ArtifactRef | dict[str, Any]) -> ArtifactRef:
    """An artifact reference as the registry types it (scripts may hand in the raw mapping)."""
    return ref if isinstance(ref, ArtifactRef) else ArtifactRef.model_validate(ref)


def in_remote(root: Path, ref: ArtifactRef | dict[str, Any]) -> bool:
    """True when the default DVC remote holds the artifact's object.

    Raises :class:`RemoteError` (exit 2) when the remote refuses the credentials or its
    bucket does not exist, rather than answering "not there".
    """
    return _object_exists(_remote(root), _as_ref(ref).md5)


def fetch(root: Path, ref: ArtifactRef | dict[str, Any], version: str) -> Path:
    """A local, verified copy of a registered artifact, fetched from the DVC remote if needed.

    Returns a path under ``.retrain/artifacts/`` named by sha256; the file there has been
    checked against ``ref.sha256``.  Bytes that differ from the registry's sha256 (a
    tampered object in the remote, a swapped file in the DVC cache, a hand-edited registry
    entry) are refused with one line naming where they came from, before anything loads.
    """
    ref = _as_ref(ref)
    root = Path(root)
    store = root / ".retrain" / "artifacts"
    target = store / f"{ref.sha256}.{ref.format or MODEL_FORMAT}"
    if target.is_file() and sha256_of(target) == ref.sha256:
        return target
    store.mkdir(parents=True, exist_ok=True)
    # A name of this process's own: a server following git and a `retrain promote` beside it
    # fetch the same version at the same moment, and one must not hash the other's half copy.
    tmp = store / f"{ref.sha256}.{os.getpid()}-{secrets.token_hex(4)}.part"
    source = cache_path(root, ref.md5)
    if source.is_file():
        shutil.copyfile(source, tmp)
        origin = f"the DVC cache ({_relative(source, root)})"
    else:
        remote = _remote(root)
        where = remote.object_url(ref.md5)
        if not _object_exists(remote, ref.md5):
            raise ArtifactError(
                f"registry.yaml: version {version}: artifact md5 {ref.md5} is in neither the "
                f"DVC cache nor {remote} (no object at {where}); was it pushed?"
            )
        try:
            remote.odb.fs.get_file(remote.object_path(ref.md5), str(tmp))
        except FileNotFoundError as exc:
            tmp.unlink(missing_ok=True)
            if _missing_bucket(exc):
                raise remote_failure(remote, exc) from None
            raise ArtifactError(
                f"registry.yaml: version {version}: no object at {where} in {remote}"
            ) from None
        except Exception as exc:
            tmp.unlink(missing_ok=True)
            raise remote_failure(remote, exc) from None
        origin = f"{remote} ({where})"
    actual = sha256_of(tmp)
    if actual != ref.sha256:
        tmp.unlink()
        raise ArtifactError(
            f"registry.yaml: version {version}: artifact sha256 mismatch: the registry says "
            f"{ref.sha256[:12]}…, the object from {origin} has {actual[:12]}…; "
            "refusing to load it"
        )
    tmp.replace(target)
    return target


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def load_registered(
    root: Path,
    ref: ArtifactRef,
    version: str,
    *,
    trusted: Sequence[str] = (),
    code_root: Path | None = None,
) -> Any:
    """The one way to load a registered version: fetch by md5 (cache, then remote), check
    sha256, then deserialise with the skops allow-list plus ``trusted``
    (``configs/model.yaml: trusted_types``).  Everything that serves or scores a registered
    model (predict, promote, verify, the server) goes through here.  ``code_root`` (default
    ``root``) is where the fork's own code is imported from: a server following git loads a
    version with the code of the revision that names it."""
    path = fetch(root, ref, version)
    return load_verified(
        path,
        ref.sha256,
        trusted=trusted,
        code_root=root if code_root is None else code_root,
        display=f"registry.yaml: version {version}",
    )
