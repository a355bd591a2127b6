"""The scheduler: runs every built version's endpoints on the targets of its deployment.

Events wake it for one version; a periodic full pass over the state of record repairs what
a lost event or a crash left behind. Layers, top down (import-linter holds them):

- ``app`` — the wiring: a driver per kind of target, the reconciler, the event handler, the
  logs server (``__main__`` starts it).
- ``events`` — everything the scheduler consumes (facts, in the record's order) and publishes
  (reports, ``Reports``): a new or changed event goes here.
- ``reconcile`` — the loop: apply a version's workloads, remove a version's, the full pass.
  ``logs`` answers the API's logs requests from the drivers.
- ``drivers`` — the ``Driver`` protocol, shared by every kind, with a ``fake`` for unit tests;
  one subpackage per kind (``local``, ``container``, ``kubernetes``) that imports no other:
  a new kind of target is a new subpackage, named in ``app.drivers_for``.
- ``desired`` — the pure decisions: which workloads a version needs on its targets, and which
  running workloads a full pass removes. ``settings`` — the scheduler's settings.
"""
