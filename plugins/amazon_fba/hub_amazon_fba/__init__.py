"""hub connector for Amazon FBA Onsite (Brazil) over the Selling Partner API."""
