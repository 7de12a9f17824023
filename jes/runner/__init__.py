"""Runners turn a rendered task into an outcome: Kubernetes Jobs or local processes."""
