"""Run-time failure prediction (FIPER): `metrics` holds the detection metrics with their intervals."""
