"""Activities: the only code that touches PostgreSQL or the outside world for a workflow."""
