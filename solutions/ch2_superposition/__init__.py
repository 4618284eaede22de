"""Chapter 2 — Superposition toys."""
