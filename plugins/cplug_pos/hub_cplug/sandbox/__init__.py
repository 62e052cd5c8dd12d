"""The CPlug API v3 emulator the tests, ``hub sandbox cplug`` and ``hub demo`` run against."""

from hub_cplug.sandbox.server import CPlugSandbox

__all__ = ["CPlugSandbox"]
