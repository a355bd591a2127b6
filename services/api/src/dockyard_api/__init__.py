"""The Dockyard API: the only writer of the state of record.

Its modules in layers, top to bottom; a module imports only from its own layer or below
(the import-linter contract "The API's layers" in the root ``pyproject.toml``):

=============  ==========================================================================
layer          modules
=============  ==========================================================================
entry          ``__main__``, ``app`` (wiring: settings → connections → stores → routes)
routes         ``routes/*``: parse, authorise, call a workflow, answer; no route imports
               another (``routes/paths`` holds the path parameters they share)
workflows      ``switching`` (an alias switch), ``submission`` (a new version),
               ``starting`` / ``stopping`` (a version's start and stop), ``sweeper``
               (retention), ``relay`` and ``tracking`` (the event flow)
stores         ``context`` (what every request needs), ``scopes`` (the project or
               deployment a route acts on), ``blob_store``, ``applied`` (what the router
               processes applied), ``auth``, ``problems``, ``preconditions``
rules          pure: ``alias_rules``, ``version_rules``, ``status``, ``retention``,
               ``readiness``, ``valohai``, ``yaml_bounds``; and the models and settings:
               ``inputs``, ``listing``, ``accounts``, ``settings``
webhooks       the webhook delivery process (``python -m dockyard_api.webhooks``)
=============  ==========================================================================

Where a change goes: a new alias rule in ``alias_rules``; what a submission accepts in
``version_rules`` (the facts it needs are read in ``submission``); a new route in
``routes/`` calling a workflow.
"""
