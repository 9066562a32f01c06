"""One module per domain hook. Importing this package declares every hook's metrics."""
