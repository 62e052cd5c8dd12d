"""The web console (``hub serve``): per-tenant pages for the people who fix a DE-PARA or read why a sale was
refused, beside the webhook receiver, ``/metrics`` and ``/health``. Server-rendered, Portuguese and English."""
