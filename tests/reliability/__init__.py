"""The reliability harness: real processes, injected faults, every alert accounted for.

``python -m tests.reliability --profile short|long`` (see __main__.py); docs/RELIABILITY.md
has the numbers of the last long run.
"""
