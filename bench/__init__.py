"""`python bench/run.py`: sticky-proxy measured beside nginx and HAProxy (bench/README.md).

Not part of the test suite: it prints numbers, it asserts nothing.
"""
