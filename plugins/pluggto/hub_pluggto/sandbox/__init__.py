"""The Plugg.to API emulator the tests and ``hub sandbox pluggto`` run against."""

from hub_pluggto.sandbox.server import PluggtoSandbox

__all__ = ["PluggtoSandbox"]
