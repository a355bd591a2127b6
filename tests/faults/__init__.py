"""The fault suite: kill -9 each process of a running platform under load, and measure.

``test_faults.py`` runs it (part of ``make test``); with ``DOCKYARD_FAULTS_RESULTS`` set it
writes its measurements there as JSON, which ``python -m tests.faults.report`` renders as
docs/reliability.md (``make reliability`` does both).
"""
