"""The demo app: every process answers with its own uuid, so stickiness is visible."""
