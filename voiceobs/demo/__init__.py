"""The demo: an instrumented voice engine and a call simulator that drives it."""
