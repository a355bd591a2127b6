"""The router: Dockyard's data plane, serving model endpoints by version and alias.

Layered from the top (import-linter holds each layer to importing only those below it):

- ``app``: the wiring (the tables, their feeds, the proxy, the router's own pages, the
  background tasks); ``__main__`` and ``workers`` start it, in one process or several.
- ``proxy`` (forwards a request to an upstream), ``front`` (client connections parsed
  with httptools, each request an ``exchange``; ``upstreams`` are the pooled connections
  to replicas) and ``ops`` (the ``/_ops`` pages, ``/metrics``).
- ``feeds``: every input of the tables, in one place, with the table of what each is,
  where it comes from and how it is ordered (the state of record's buckets, the Redis
  mirror).
- ``tables``: the route table, and how a request path resolves or is told why it does
  not; pure, as are ``routed`` (what routing reads of a record), ``paths`` (a request path
  taken apart, how an alias picks a version) and ``problems`` (every problem document the
  router answers with).
"""
