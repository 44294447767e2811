"""Workers: the claim-run-ack loop of one process, the supervising pool, heartbeats."""
