"""Chapter 1 — Transformer math."""
