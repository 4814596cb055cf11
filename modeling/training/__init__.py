"""Training: the one loop (loop.py), batches from the task library, and a job per model family."""
