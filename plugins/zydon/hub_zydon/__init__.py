"""The Zydon B2B connector for hub (the entry point is ``hub_zydon.plugin``)."""
