"""Graders for Chapter 9 — Model diffing."""
