"""Where the engine runs: a child process (``child``) and the window-side client (``client``)."""
