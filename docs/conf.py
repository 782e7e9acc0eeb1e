"""Sphinx configuration for the ipkernel documentation.

Build (warnings are errors, every reference must resolve)::

    pip install '.[docs]'
    sphinx-build -W -n --keep-going -b html docs docs/_build/html

autodoc imports the *installed* ipkernel (nothing here puts the checkout on
``sys.path``): install the project first.  Only ``docs/_ext`` (this
documentation's own Sphinx extension) is added to the path.
"""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "_ext"))

import ipkernel  # noqa: E402  (the installed package)

project = "ipkernel"
author = "the ipkernel developers"
release = ipkernel.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "zopeinterface",  # docs/_ext/zopeinterface.py: zope Interfaces and Foolscap RemoteInterfaces
]
exclude_patterns = ["_build"]
html_theme = "alabaster"

autodoc_member_order = "bysource"
autodoc_default_options = {"show-inheritance": True}

# No intersphinx: the build must work offline (CI and this machine cannot
# reach docs.twisted.org or docs.python.org).  References to the few names
# from other projects that ipkernel's docstrings and class bases mention have
# no target then; they are listed here, one by one.  Nothing of ipkernel's
# own is ignored: a broken reference to ipkernel is an error.
nitpick_ignore = [
    # Twisted
    ("py:class", "twisted.internet.defer.Deferred"),
    ("py:class", "twisted.application.service.Service"),
    ("py:class", "twisted.application.service.MultiService"),
    ("py:class", "twisted.internet.protocol.Protocol"),
    ("py:class", "twisted.web.server.Site"),
    ("py:mod", "twisted.logger"),
    ("py:class", "twisted.logger.LogLevel"),
    # Foolscap
    ("py:class", "foolscap.referenceable.Referenceable"),
    ("py:class", "foolscap.negotiate.Negotiation"),
    ("py:class", "foolscap.api.Violation"),
    ("py:class", "foolscap.api.RemoteException"),
    # IPython (the parallel magics' base) and the standard library
    ("py:class", "IPython.core.magic.Magics"),
    ("py:class", "concurrent.futures._base.Executor"),
    ("py:class", "concurrent.futures.Executor"),
    # the Python standard library
    ("py:mod", "subprocess"),
    ("py:class", "abc.ABC"),
    ("py:class", "pathlib.Path"),
    ("py:class", "subprocess.Popen"),
    ("py:mod", "random"),
    ("py:func", "time.monotonic"),
]


def _plain_class_defaults(app, what, name, obj, options, signature, return_annotation):
    """Show a class used as a default value by its dotted name, not its repr
    (``shell_class=ipkernel.engine.interpreter.Interpreter``)."""
    if signature and "<class '" in signature:
        signature = re.sub(r"<class '([\w.]+)'>", r"\1", signature)
    return signature, return_annotation


def _no_object_base(app, name, obj, options, bases):
    """``Bases: object`` says nothing: show only real bases."""
    bases[:] = [b for b in bases if b is not object]


def setup(app):
    app.connect("autodoc-process-signature", _plain_class_defaults)
    app.connect("autodoc-process-bases", _no_object_base)
