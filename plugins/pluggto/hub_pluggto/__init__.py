"""hub connector for Plugg.to (marketplace hub): SKUs, stock, prices, orders, NF-e attachment, notifications."""
