"""Graders for Chapter 8 — Attribution graphs."""
