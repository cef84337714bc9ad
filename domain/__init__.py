"""Pure business rules and payload models: no I/O, deterministic, safe inside workflows."""
