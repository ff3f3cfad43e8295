"""Progressive delivery after the merge: routing, live analysis, monitor (DESIGN.md §12).

``routing`` decides which version answers a request; ``analysis`` computes each version's
live statistics from the prediction log; ``judges`` turns them into a verdict per strategy;
``monitor`` turns a verdict into a git change (a branch and PR, or a commit on main), like
``retrain propose`` and ``retrain rollback`` do.
"""
