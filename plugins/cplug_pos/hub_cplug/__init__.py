"""hub connector for CPlug / ConnectPlug POS (API v3), with its sandbox."""
