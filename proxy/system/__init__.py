"""Process-level helpers every plane may use: the heap and collector policy, and certificates
loaded without temporary files."""
