"""commands: what each ``jes`` command does beyond parsing its flags (serve, run, check, the
authoring commands, copy-files). Rule: commands may use every stage and the service; nothing
below imports commands. Keep this file light: ``jes serve`` imports the signal handling from here
before anything slow."""
