"""Qt widgets: thin views that bind to the Qt models in :mod:`fbupscale_gui.state`."""
