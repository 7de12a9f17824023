"""matcher: pure, no I/O — the job/config.yaml model (:mod:`.schema`, with yaml.v2 field types in
:mod:`.fieldtypes`), its strict, bounded loading (:mod:`.config`, reading YAML with :mod:`.yamlsource`)
and the checks beyond shapes (:mod:`.checks`), JSONPath, the image policy, and which actions run
for an event with every task rendered, a record of why (:mod:`.matching`).
Rule: a stage; nothing here touches the network, the disk or the clock."""
