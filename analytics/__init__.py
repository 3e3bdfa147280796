"""Analytics: quality flags, anomaly scores, indices and fire codes from the stored readings, and the alerts
they raise (the `rimba analyze` and `rimba alerts` services)."""
