"""Graders for Chapter 4 — Patching."""
