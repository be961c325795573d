"""Development and test doubles: a fake Rule and a fake Centra (`manage.py fakerule` / `fakecentra`).

Installed by `make run` and the tests (settings.SANDBOX), absent from production settings. The core never imports
this package.
"""
