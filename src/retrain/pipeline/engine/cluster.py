"""The Dask cluster ``engine: dask`` trains on: a running scheduler, or a LocalCluster.

Where: ``DASK_SCHEDULER_ADDRESS`` (the environment, as Dask itself reads it) wins over
``configs/model.yaml: dask.scheduler_address``; with neither, an in-process ``LocalCluster``
of ``dask.local_workers`` worker processes starts and stops with the training.  A scheduler
that does not answer within ``dask.connect_timeout_seconds`` is a one-line error naming the
address and where it was set (exit 2), before any data is read.

The workers must run the runner's locked environment (uv.lock): a model fitted by one
scikit-learn or LightGBM and recorded as another's is a model nobody can reproduce.  After
connecting, every worker reports the versions of the libraries the fit uses, and a worker
that differs from this process is refused, by name.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from retrain.core.config import Config, dask_address_problem
from retrain.core.errors import BadInput, ConfigError
from retrain.core.progress import progress

MODEL_YAML = "configs/model.yaml"
ADDRESS_ENV = "DASK_SCHEDULER_ADDRESS"
# Modules whose versions must agree between the runner and every worker (import names).
SHARED_MODULES = ("dask", "distributed", "cloudpickle", "numpy", "pandas", "scipy", "sklearn")
# How long LocalCluster workers wait for a scheduler that went away (our process died
# without closing them) before they exit by themselves.
LOCAL_DEATH_TIMEOUT_S = 30


@dataclass
class Cluster:
    """A connected client and what it is connected to."""

    client: Any
    where: str  # "LocalCluster" or the scheduler's address

    def size(self) -> tuple[int, int]:
        """(workers, threads) right now."""
        nthreads = self.client.nthreads()
        return len(nthreads), int(sum(nthreads.values()))

    @property
    def local(self) -> bool:
        return self.where == "LocalCluster"


def scheduler_address(cfg: Config) -> tuple[str | None, str]:
    """The scheduler to connect to (None: start a LocalCluster) and where it was set."""
    env = os.environ.get(ADDRESS_ENV, "").strip()
    if env:
        problem = dask_address_problem(env)
        if problem:
            raise ConfigError(f"{ADDRESS_ENV}: {problem} (got {env!r})")
        return env, ADDRESS_ENV
    return cfg.model.dask.scheduler_address, f"{MODEL_YAML}: dask.scheduler_address"


def _require_dask() -> None:
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"{MODEL_YAML}: engine: dask needs the dask and distributed packages, which are "
            "not installed; install the `dask` extra (`.ci/install --extra dask`, or "
            "`pip install 'retrain[dask]'`; `make install` has it)"
        ) from None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


def _remote_client(address: str, origin: str, timeout: float) -> Any:
    from distributed import Client

    try:
        return Client(address, timeout=timeout, set_as_default=True)
    except (OSError, TimeoutError) as exc:
        raise ConfigError(
            f"{origin}: the Dask scheduler at {address} did not answer within {timeout:g} s "
            f"({_one_line(exc)})"
        ) from None


@contextlib.contextmanager
def _children_print_to_stderr() -> Iterator[None]:
    """Processes started within inherit stderr as their stdout: LightGBM's native library
    prints its network set-up on stdout, where `retrain run --json` writes its JSON."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _local_cluster(cfg: Config) -> tuple[Any, Any]:
    from distributed import Client

    settings = cfg.model.dask
    with _children_print_to_stderr():
        cluster = _start_local(settings)
    try:
        return cluster, Client(cluster, set_as_default=True)
    except BaseException:
        cluster.close()
        raise


def _start_local(settings: Any) -> Any:
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=settings.local_workers,
        threads_per_worker=settings.threads_per_worker,
        processes=True,
        dashboard_address="127.0.0.1:0",  # no fixed port: any free one, on loopback
        silence_logs=logging.ERROR,
        death_timeout=LOCAL_DEATH_TIMEOUT_S,
    )


def _reporter() -> Any:
    # A nested function, so cloudpickle ships it by value: a worker needs no `retrain`.
    def report(names: tuple[str, ...]) -> dict[str, str | None]:
        import importlib
        import platform

        # functions and closures cross between interpreters as bytecode: same major.minor
        out: dict[str, str | None] = {"python": ".".join(platform.python_version_tuple()[:2])}
        for name in names:
            try:
                out[name] = str(importlib.import_module(name).__version__)
            except Exception:
                out[name] = None
        return out

    return report


def versions_on_workers(client: Any, modules: tuple[str, ...]) -> dict[str, dict[str, str | None]]:
    """worker address -> module -> its ``__version__`` there (None: not importable), and
    ``python``: the worker's Python major.minor."""
    return dict(client.run(_reporter(), modules))


def check_versions(client: Any, where: str, extra: tuple[str, ...] = ()) -> None:
    """Refuse workers whose libraries differ from this process's (one line, exit 2)."""
    modules = (*SHARED_MODULES, *extra)
    mine = _reporter()(modules)
    for worker, theirs in sorted(versions_on_workers(client, modules).items()):
        for name in ("python", *modules):
            if theirs.get(name) != mine[name]:
                has = f"{name} {theirs.get(name)}" if theirs.get(name) else f"no {name}"
                raise BadInput(
                    f"Dask worker {worker} ({where}) has {has}, this runner {mine[name]}: "
                    "the workers must run the locked environment (uv.lock; see "
                    'docs/dask.md, "Same versions on the workers")'
                )


@contextlib.contextmanager
def connect(cfg: Config, extra_modules: tuple[str, ...] = ()) -> Iterator[Cluster]:
    """A client on the configured cluster (or a LocalCluster), closed on exit.

    ``extra_modules`` are the model's own libraries (``lightgbm``), checked on the workers
    besides :data:`SHARED_MODULES`.
    """
    _require_dask()
    import dask

    settings = cfg.model.dask
    address, origin = scheduler_address(cfg)
    timeout = settings.connect_timeout_seconds
    # Strings stay Python objects, as the runner's validated frames have them (Dask would
    # turn them into pyarrow strings); connecting gives up after the configured timeout.
    options = {
        "dataframe.convert-string": False,
        "distributed.comm.timeouts.connect": f"{timeout}s",
    }
    with dask.config.set(options):
        cluster = None
        if address:
            progress(f"train: connecting to the Dask scheduler at {address} ({origin})")
            client = _remote_client(address, origin, timeout)
            where = address
        else:
            progress(
                f"train: starting a Dask LocalCluster ({settings.local_workers} worker "
                f"process(es) x {settings.threads_per_worker} thread(s))"
            )
            cluster, client = _local_cluster(cfg)
            where = "LocalCluster"
        try:
            if not client.nthreads():
                try:
                    client.wait_for_workers(1, timeout=timeout)
                except (OSError, TimeoutError):
                    raise ConfigError(
                        f"{origin}: the Dask scheduler at {address} has no workers "
                        f"(waited {timeout:g} s)"
                    ) from None
            check_versions(client, where, extra_modules)
            yield Cluster(client=client, where=where)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
