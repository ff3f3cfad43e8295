"""Serving the production model straight from git (``retrain serve``).

The server follows ``registry.yaml`` (the working tree, or a git ref it fetches), loads the
version it names through DVC with its sha256 checked, swaps it in without a restart, answers
MLflow scoring-server payloads, batches concurrent requests into one model call, and writes
every served row to the prediction log off the request path.
"""
