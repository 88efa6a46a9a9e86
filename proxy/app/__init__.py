"""The application shell: the command line, the commands, settings, the assembled runtime,
worker processes and the demo."""
