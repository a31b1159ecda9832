"""The demo: πRL (or DSRL) from a shipped SFT checkpoint on an embedded task, on localhost."""
