"""`seedance-otel demo`: the three traps on loopback, shipped over real OTLP, then diagnosed."""
