"""clients.keptn: the Keptn control-plane API as jes uses it — the HTTP client (:mod:`.client`),
the values on the wire (:mod:`.wire`), the error mapping (:mod:`.httperrors`) and the reading of
answers (:mod:`.answers`), whether a sent event arrived (:mod:`.arrival`), x-token and OAuth
authentication (:mod:`.auth`), and the config source (job/config.yaml and task files from the
resource service, :mod:`.configsource`)."""
