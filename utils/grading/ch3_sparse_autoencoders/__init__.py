"""Graders for Chapter 3 — Sparse autoencoders."""
