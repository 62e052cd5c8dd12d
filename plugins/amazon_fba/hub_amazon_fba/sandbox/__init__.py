"""The SP-API emulator the tests, ``hub sandbox amazon_fba`` and the Amazon -> Bling flow run against."""

from hub_amazon_fba.sandbox.server import AmazonSandbox

__all__ = ["AmazonSandbox"]
