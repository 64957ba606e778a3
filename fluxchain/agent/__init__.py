"""The node daemon (agent): runs the workloads the chain assigns its node (docs/agent.md)."""
