"""The judgements: retrain now? did the data move? may this candidate replace production?

Imports only `core` and `pipeline`.
"""
