"""An in-memory emulator of Bling's API v3, served over real HTTP by :func:`hub.sandbox.serve`.

It follows Bling's published OpenAPI spec field for field (:mod:`hub_bling.spec`) plus the behaviour the spec
leaves out: OAuth with rotating refresh tokens, per-account rate limits and IP blocks, list defaults that hide
data, order actions that post stock and accounts, NF-e authorization and signed webhooks.
"""

from .box import FAULTS, BlingSandbox

__all__ = ["FAULTS", "BlingSandbox"]
