"""Graders for Chapter 7 — Automated circuit discovery."""
