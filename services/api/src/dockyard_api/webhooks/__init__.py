"""Webhooks: subscriptions to the event stream delivered over HTTP, signed, in order.

``routes/webhooks.py`` manages subscriptions in the API; ``python -m dockyard_api.webhooks``
is the delivering process: :mod:`.dispatch` queues each event for the subscriptions it
matches, :mod:`.lanes` delivers each queue lane in order, :mod:`.sender` makes one signed
attempt, :mod:`.deliveries` keeps the log. See docs/webhooks.md.
"""
