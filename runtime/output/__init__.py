"""A task's captured output: stored chunks, the live stream, log files and the mirror."""
