"""jes: a Keptn job executor service. The public surface is the ``jes`` command, the
job/config.yaml schema and the Helm values; modules are implementation details."""

__version__ = "0.1.0"
