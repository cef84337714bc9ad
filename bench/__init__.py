"""`orderflow bench`: the load driver and the skeleton baselines."""
