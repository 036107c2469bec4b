"""Integrations and helpers that sit on top of the core (testing; later Django, pytest)."""
