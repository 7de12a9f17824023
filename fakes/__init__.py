"""fakes: test doubles as unkind as the systems they stand for (the fake Kubernetes API). Imported by
tests/ and bench/; never packaged; jes never imports it."""
