"""Chapter 9, model diffing: the ground truth of the auditing exercise."""
