"""Data the course generates itself: nothing here downloads anything."""
