"""runner.local: each task as a local process under a detached supervisor (:mod:`.shim`) that
survives jes; for development, demos and ``jes run``."""
