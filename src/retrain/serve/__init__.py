"""Serving, after the merge: the model server that follows ``registry.yaml`` in git, its
prediction log (every served row, written off the request path, joined with live feedback)
and what reads that log (``retrain audit``, ``retrain feedback export``, the live performance
trigger).  This wing sits above ``release`` (it reads the promotion history) and below
``rollout``.
"""
