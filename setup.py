"""Packaging for ipkernel.

The top-level ``interfaces/`` folder holds the contracts (zope Interfaces and,
later, Foolscap RemoteInterfaces).  It is installed as ``ipkernel.interfaces``
and must never be importable as a top-level ``interfaces`` package.
"""
from setuptools import setup

setup(
    packages=[
        "ipkernel",
        "ipkernel.engine",
        "ipkernel.controller",
        "ipkernel.client",
        "ipkernel.cluster",
        "ipkernel.task",
        "ipkernel.interfaces",
    ],
    package_dir={"ipkernel.interfaces": "interfaces"},
)
