"""The evaluation layer, pure functions on arrays: metrics from confusion counts (pooled and
per image, with bootstrap intervals) and paired statistical tests."""
