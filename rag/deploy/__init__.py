"""Deployment tooling: offline assets, profile checks, the no-network guard."""
