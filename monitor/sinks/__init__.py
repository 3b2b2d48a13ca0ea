"""Where events go: the console, JSON lines, the EPERM log, and the log lines themselves."""
