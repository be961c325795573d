"""Importing a merchant's order history from Centra into Rule without starting any automation (issue 14).

`plan` decides what each Centra object becomes (pure), `source` reads Centra page by page, `runner` drives an
import one Rule call per task (claim, call, record), and `models` keeps the record. See docs/internals.md.
"""
