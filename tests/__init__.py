"""The test suite, a package so that its shared helpers (``tests.helpers``) import by one name."""
