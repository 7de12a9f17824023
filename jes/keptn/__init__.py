"""Talking to the Keptn control plane: HTTP client, auth, config source, and a local control plane."""
