"""Callables of every kind a map or a MapTask takes: a function with a
default (for ``functools.partial``), and a class whose instances are called
and whose methods are bound.  Shared by the tests of the 0.10 import surface."""


def power(x, n=2):
    return x ** n


class Scale:
    """A callable object with a method: both are mapped."""

    def __init__(self, factor):
        self.factor = factor

    def times(self, x):
        return self.factor * x

    def __call__(self, x):
        return self.factor * x + 1
