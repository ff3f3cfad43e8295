"""``retrain serve``: read the serving configuration once, then run the app on uvicorn.

Only what serving needs is read (:mod:`retrain.core.config.serving`): a typo in
``gates.yaml`` never stops a server.  ``RETRAIN_LOG_URL`` overrides ``serve.yaml: log_url``
(a PostgreSQL URL with its password belongs in a Secret, not in git).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from retrain.core.config.serving import load_serving_config, with_environment
from retrain.serve.state import ServeSettings


def settings_for(
    root: Path,
    *,
    follow: str | None = None,
    interval: float | None = None,
    follow_path: Path | None = None,
) -> ServeSettings:
    """Everything ``create_app`` needs; bad configuration raises ConfigError (exit 2).

    The configuration at start is the working tree's; a server that follows a git ref or a
    mounted path then applies its revision's on the first reconcile."""
    root = Path(root).resolve()
    cfg = load_serving_config(root)
    return ServeSettings(
        root=root,
        model_name=cfg.model_name,
        dataset=cfg.dataset,
        config=with_environment(cfg.serve),
        follow=follow,
        interval=interval,
        trusted=cfg.trusted_types,
        follow_path=follow_path,
    )


def serve(
    root: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    follow: str | None = None,
    interval: float | None = None,
    follow_path: Path | None = None,
) -> None:
    import uvicorn

    from retrain.serve.app import create_app

    settings = settings_for(root, follow=follow, interval=interval, follow_path=follow_path)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="[retrain] %(message)s")
    following = f"{follow_path} (mounted)" if follow_path else follow or "the working tree"
    print(
        f"[retrain] serve: {settings.model_name} from {following}'s "
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
