"""clients.keptn: the Keptn control-plane API as jes uses it — the HTTP client and its error
mapping, x-token and OAuth authentication, and the config source (job/config.yaml and task files
from the resource service)."""
