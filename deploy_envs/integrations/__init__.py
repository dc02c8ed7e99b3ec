"""Adapters to optional ecosystems (Safety-Gymnasium's 6-tuple, ...); import the submodule you need."""
