"""Workflows: orchestration only."""
