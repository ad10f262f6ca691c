"""The imgcls benchmark harness: ``python -m bench`` (see README)."""
