"""``retrain serve``: read the serving configuration once, then run the app on uvicorn.

Only what serving needs is read (:mod:`retrain.core.config.serving`): a typo in
``gates.yaml`` never stops a server.  ``RETRAIN_LOG_URL`` (or the file named by
``RETRAIN_LOG_URL_FILE``) overrides ``serve.yaml: log_url`` (a PostgreSQL URL with its password
belongs in a Secret, not in git).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from retrain.core.config.serving import load_serving_config
from retrain.serve.state import ServeSettings


def settings_for(
    root: Path,
    *,
    follow: str | None = None,
    interval: float | None = None,
    follow_path: Path | None = None,
    dev_open_feedback: bool = False,
) -> ServeSettings:
    """Everything ``create_app`` needs; bad configuration raises ConfigError (exit 2).

    The configuration at start is the working tree's; a server that follows a git ref or a
    mounted path then applies its revision's on the first reconcile.  The prediction log's
    URL comes from ``RETRAIN_LOG_URL``, the file named by ``RETRAIN_LOG_URL_FILE`` (a mounted
    secret), or ``configs/serve.yaml``, as for ``retrain monitor``: a password never has to
    be committed."""
    from retrain.serve.predlog import log_url_of

    root = Path(root).resolve()
    cfg = load_serving_config(root)
    url, _ = log_url_of(cfg.serve)
    return ServeSettings(
        root=root,
        model_name=cfg.model_name,
        dataset=cfg.dataset,
        config=cfg.serve,
        follow=follow,
        interval=interval,
        trusted=cfg.trusted_types,
        follow_path=follow_path,
        log_url=url,
        dev_open_feedback=dev_open_feedback,
    )


def serve(
    root: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    follow: str | None = None,
    interval: float | None = None,
    follow_path: Path | None = None,
    dev_open_feedback: bool = False,
) -> None:
    import uvicorn

    from retrain.core import redact
    from retrain.core.errors import BadInput
    from retrain.serve.app import create_app
    from retrain.serve.auth import TOKENS_ENV, TokenFile, check_dev_switch

    try:
        check_dev_switch(host, dev_open_feedback)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    settings = settings_for(
        root,
        follow=follow,
        interval=interval,
        follow_path=follow_path,
        dev_open_feedback=dev_open_feedback,
    )
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="[retrain] %(message)s")
    # Every line this process logs is scrubbed of the log URL's password.
    scrub = ScrubSecrets(settings.secrets)
    for handler in logging.getLogger().handlers:
        handler.addFilter(scrub)
    tokens, error = TokenFile.from_env().current()
    if error:
        feedback = f"/feedback refused ({error})"
    elif tokens:
        feedback = f"/feedback with {len(tokens)} token(s) from {TOKENS_ENV}"
    elif dev_open_feedback:
        feedback = "/feedback open to loopback without a token (development; labels not trusted)"
    else:
        feedback = f"/feedback closed: no {TOKENS_ENV}"
    following = f"{follow_path} (mounted)" if follow_path else follow or "the working tree"
    print(
        f"[retrain] serve: {settings.model_name} from {following}'s "
        f"registry.yaml, every {settings.reconcile_interval:g}s, on http://{host}:{port}; "
        f"log {redact.url(settings.prediction_log_url)}; {feedback}",
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


class ScrubSecrets(logging.Filter):
    """A logging filter that masks the known secrets (and passwords in URLs) of a record."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        from retrain.core import redact

        message = record.getMessage()
        clean = redact.urls_in(redact.scrub(message, self.secrets))
        if clean != message:
            record.msg, record.args = clean, None
        return True
