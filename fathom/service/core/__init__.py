"""What every part of the service builds on: its settings (``config``)."""
