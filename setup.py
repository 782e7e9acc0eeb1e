"""Packaging for ipkernel.

Packages are found on disk, so a new subpackage of ``ipkernel/`` is always
installed.  The top-level ``interfaces/`` folder holds the contracts (zope
Interfaces and Foolscap RemoteInterfaces); it is installed as
``ipkernel.interfaces`` and never as a top-level ``interfaces`` package.
"""
from setuptools import find_packages, setup


def ipkernel_packages():
    """Every package under ``ipkernel/`` and ``interfaces/`` (as ``ipkernel.interfaces``)."""
    found = find_packages(include=["ipkernel", "ipkernel.*"])
    contracts = ["ipkernel.interfaces"] + [
        f"ipkernel.interfaces.{name}" for name in find_packages(where="interfaces")]
    return sorted(found + contracts)


setup(
    packages=ipkernel_packages(),
    package_dir={"ipkernel.interfaces": "interfaces"},
    # the dashboard's page, scripts, styles and vendored charting library
    package_data={"ipkernel.dashboard": ["static/*"]},
)
