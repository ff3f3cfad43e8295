"""What a reviewer reads: the PR body, the run summary and their plots.

Imports `core`, `pipeline` and `decide` at most.
"""
