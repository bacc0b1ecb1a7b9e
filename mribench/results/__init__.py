"""The results folder: one writer, one reader, and the ranking of its rows."""
