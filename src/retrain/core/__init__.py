"""The records: what is configured, what is registered, and the version catalogue.

Imports no other wing.
"""
