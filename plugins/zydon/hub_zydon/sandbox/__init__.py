"""The Zydon emulator the tests, ``hub sandbox zydon`` and the Zydon <-> Bling flows run against."""

from hub_zydon.sandbox.server import ZydonSandbox

__all__ = ["ZydonSandbox"]
