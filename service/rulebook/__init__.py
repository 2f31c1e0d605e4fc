"""The rulebook language: the YAML a committee edits, checked, compiled and evaluated.

`reader` reads rules/ivig.yaml and data/ into the typed `model`; `lint` adds the checks that need
the whole rulebook, and its `load_checked` is what serving a rulebook takes (load, lint, refuse);
`precedence` orders rules that can both match, `compiler` turns them into durable-rules rulesets
and `engine` evaluates them, the only module that touches durable-rules. `facts` holds what the
rules decide on and answer, `text_keys` how texts are compared, `icd10` the code set, `as_data`
the formulary as data, and `shipped` which rulebook file is served. Nothing here imports the
layers above it (decide, store, workflow, web), so a rulebook can be checked without them.
"""
