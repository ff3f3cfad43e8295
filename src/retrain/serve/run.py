"""``retrain serve``: read the configuration once, then run the app on uvicorn."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from retrain.core.config import load_config, load_serve_config
from retrain.serve.state import ServeSettings


def settings_for(
    root: Path, *, follow: str | None = None, interval: float | None = None
) -> ServeSettings:
    """Everything ``create_app`` needs; bad configuration raises ConfigError (exit 2)."""
    cfg = load_config(root)
    return ServeSettings(
        root=cfg.root,
        model_name=cfg.release.model_name,
        dataset=cfg.dataset,
        config=load_serve_config(cfg.root),
        follow=follow,
        interval=interval,
        trusted=tuple(cfg.model.trusted_types),
    )


def serve(
    root: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    follow: str | None = None,
    interval: float | None = None,
) -> None:
    import uvicorn

    from retrain.serve.app import create_app

    settings = settings_for(root, follow=follow, interval=interval)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="[retrain] %(message)s")
    print(
        f"[retrain] serve: {settings.model_name} from {follow or 'the working tree'}'s "
        f"registry.yaml, every {settings.reconcile_interval:g}s, on http://{host}:{port}",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=10,
    )
