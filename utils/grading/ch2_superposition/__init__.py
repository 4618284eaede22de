"""Graders for Chapter 2 — Superposition toys."""
