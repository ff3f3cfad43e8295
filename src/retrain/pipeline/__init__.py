"""What `dvc repro` runs: read and check data, fit, score, measure, save, log.

Imports only `core`.
"""
