"""runner.local: each task as a local process under a detached supervisor (:mod:`.shim`) that
survives jes; for development, demos and ``jes run``.

:mod:`.runner` (:class:`~.runner.LocalRunner`: start, adopt, follow, forget) with :mod:`.prepare`
(a task as argv, environment, files and limits), :mod:`.launch` (the job directory filled, the
shim started), :mod:`.following` (the output until the task ends), :mod:`.jobdir` (a task's state
directory and its phases, shared in format with the shim) and :mod:`.outcome` (a recorded status
as an outcome)."""
