"""Qt models: the window's state, drivable by tests without a display."""
