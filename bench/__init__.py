"""`python bench/run.py`: sticky-proxy measured side by side with nginx and HAProxy (DESIGN §8, §9).

Not part of the test suite: it prints numbers, it asserts nothing.
"""
