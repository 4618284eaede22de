"""Graders for Chapter 1 — Transformer math."""
