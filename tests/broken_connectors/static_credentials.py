"""Not a bug: lojinha without an ``authenticate`` hook, as a platform whose API keys are used as they are. The kit
skips its authentication test instead of failing it."""

from __future__ import annotations

from hub_example.plugin import (  # noqa: F401 (re-exported hooks)
    pull_catalog,
    pull_sales,
    push_catalog,
    push_sale,
    register_platforms,
)
