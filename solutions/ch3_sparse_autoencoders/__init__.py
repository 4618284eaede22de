"""Chapter 3 — Sparse autoencoders."""
