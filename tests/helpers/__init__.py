"""Helpers shared by the tests: loop references of the losses and tiny on-disk dataset fixtures."""
