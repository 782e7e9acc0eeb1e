"""Sphinx extension: reference entries for zope Interfaces and Foolscap RemoteInterfaces.

autodoc does not document an Interface: it is an ``InterfaceClass``
instance, not a class, and its methods are zope ``Method`` objects (for a
Foolscap RemoteInterface, ``RemoteMethodSchema`` objects that keep neither
the method's docstring nor its defaults' source).  This extension adds
three directives:

``.. autointerface:: package.module.IName``
    one Interface or RemoteInterface: its docstring, the interfaces it
    extends, and each attribute and method it declares itself, with its
    signature and docstring.
``.. autointerfaces:: package.module``
    every Interface defined in the module, in source order.
``.. autoconstraints:: package.module``
    the module-level values documented with a ``#:`` comment (the named
    Foolscap constraints of a RemoteInterface module), with their source.

Each takes ``:no-index:``.  Interfaces are described with ``py:interface``,
a ``py:class`` that reads "interface", so ``:class:`` and ``:meth:``
references find them and their methods.

Signatures come from the module's source (zope's own signature string
loses keyword-only arguments), docstrings from zope (for RemoteInterfaces,
from the source).  A RemoteInterface entry that is not written out in the
source (a ``RemoteMethodSchema`` made from a table) is described from the
schema: its argument names, each constraint by its name in the module (the
name whose value is that constraint), the docstring set on the schema, and
its response constraint's name.
"""
import ast
import importlib
import inspect

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx import addnodes
from sphinx.domains.python import PyClasslike
from sphinx.pycode import ModuleAnalyzer
from sphinx.util.docutils import SphinxDirective
from zope.interface import Interface
from zope.interface.interface import Attribute, InterfaceClass, Method

try:
    from foolscap.remoteinterface import RemoteInterface, RemoteInterfaceClass
except ImportError:  # pragma: no cover - documents plain zope Interfaces only
    RemoteInterface = RemoteInterfaceClass = None

__version__ = "1.0"

#: Bases that say nothing to a reader (every interface has one of them).
ROOTS = tuple(i for i in (Interface, RemoteInterface) if i is not None)


class PyInterface(PyClasslike):
    """``py:interface``: a ``py:class`` whose signature reads "interface"."""

    def run(self):
        # Registered (and cross-referenced) as a class, so :class: finds it.
        self.name = "py:class"
        return super().run()

    def get_signature_prefix(self, sig):
        return [addnodes.desc_sig_keyword("", "interface"), addnodes.desc_sig_space()]

    def get_index_text(self, modname, name_cls):
        return f"{name_cls[0]} (interface in {modname})"


def is_remote(iface):
    return RemoteInterfaceClass is not None and isinstance(iface, RemoteInterfaceClass)


class _Source:
    """The classes of a module's source, parsed once: ClassDef nodes by name."""

    _cache = {}

    @classmethod
    def of(cls, module):
        name = module.__name__
        if name not in cls._cache:
            try:
                text = inspect.getsource(module)
            except (OSError, TypeError):
                text = ""
            cls._cache[name] = cls(text)
        return cls._cache[name]

    def __init__(self, text):
        self.text = text
        tree = ast.parse(text) if text else ast.Module(body=[], type_ignores=[])
        self.tree = tree
        self.classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}

    def functions(self, classname):
        classdef = self.classes.get(classname)
        if classdef is None:
            return {}
        return {n.name: n for n in classdef.body if isinstance(n, ast.FunctionDef)}

    def assignment(self, name):
        """The source text of the value of the module-level ``name = ...``."""
        for node in self.tree.body:
            if (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name) and node.targets[0].id == name):
                return ast.get_source_segment(self.text, node.value)
        return None


def _indent(lines, prefix="   "):
    return [prefix + line if line else "" for line in lines]


def _doc_lines(doc):
    return inspect.cleandoc(doc).splitlines() if doc else []


def _returned(function):
    """The source of a RemoteInterface method's ``return <constraint>``."""
    for node in function.body:
        if isinstance(node, ast.Return) and node.value is not None:
            return ast.unparse(node.value)
    return None


def interface_lines(iface, no_index=False):
    """reST describing ``iface`` and the attributes and methods it declares."""
    module = importlib.import_module(iface.__module__)
    source = _Source.of(module)
    functions = source.functions(iface.__name__)
    remote = is_remote(iface)
    lines = [f".. py:interface:: {iface.__name__}", f"   :module: {iface.__module__}"]
    if no_index:
        lines.append("   :no-index:")
    lines.append("")
    kind = "Foolscap RemoteInterface" if remote else "Interface"
    bases = [b for b in iface.__bases__ if b not in ROOTS]
    if bases:
        names = ", ".join(f":class:`~{b.__module__}.{b.__name__}`" for b in bases)
        lines.append(f"   {kind}; extends {names}.")
    else:
        lines.append(f"   {kind}.")
    if remote:
        lines.append(f"   Wire name ``{iface.__remote_name__}``.")
    lines.append("")
    lines += _indent(_doc_lines(iface.__doc__))
    lines.append("")
    inherited = inherited_line(iface)
    if inherited:
        lines += [f"   {inherited}", ""]
    for name in iface.names():
        lines += _indent(member_lines(iface, name, functions.get(name), remote))
    return lines


def inherited_line(iface):
    """"Inherited: ..." with a link to each attribute and method ``iface``
    has from its bases (where it is declared), or None."""
    own = set(iface.names())
    seen, links = set(), []
    for base in iface.__iro__[1:]:
        if base in ROOTS:
            continue
        for name in base.names():
            if name in own or name in seen:
                continue
            seen.add(name)
            declared = iface[name].interface
            role = "meth" if isinstance(iface[name], Method) or is_remote(declared) else "attr"
            links.append(f":{role}:`~{declared.__module__}.{declared.__name__}.{name}`")
    return "Inherited: " + ", ".join(links) + "." if links else None


def constraint_name(module, constraint, hint=None):
    """The module-level name in ``module`` whose value is ``constraint``
    (``hint`` when several are, and it is one of them), or None."""
    names = [n for n, v in vars(module).items() if v is constraint and not n.startswith("_")]
    if hint in names:
        return hint
    return names[0] if names else None


def schema_signature(module, schema):
    """``name=Constraint, ...`` of a RemoteMethodSchema made without a
    prototype function: each constraint by its name in ``module`` (the
    schema's ``constraint_names`` settle a value with several names)."""
    hints = getattr(schema, "constraint_names", None) or [None] * len(schema.argumentNames)
    parts = []
    for argname, hint in zip(schema.argumentNames, hints):
        constraint = schema.argConstraints[argname]
        shown = constraint_name(module, constraint, hint) or f"<{type(constraint).__name__}>"
        parts.append(f"{argname}={shown}")
    return ", ".join(parts)


def member_lines(iface, name, function, remote):
    description = iface[name]
    if remote and function is None:  # an entry made as a RemoteMethodSchema, not written out
        module = importlib.import_module(iface.__module__)
        lines = [f".. py:method:: {name}({schema_signature(module, description)})", ""]
        lines += _indent(_doc_lines(vars(description).get("__doc__")))
        response = description.getResponseConstraint()
        answer = constraint_name(module, response) if response is not None else None
        if answer is not None:
            lines += ["", f"   Answers ``{answer}``."]
        return lines + [""]
    if remote:
        signature = ast.unparse(function.args)
        doc = _doc_lines(ast.get_docstring(function))
        answer = _returned(function)
        lines = [f".. py:method:: {name}({signature})", ""]
        lines += _indent(doc)
        if answer is not None:
            lines += ["", f"   Answers ``{answer}``."]
        return lines + [""]
    if isinstance(description, Method):
        if function is not None:
            signature = f"({ast.unparse(function.args)})"
        else:
            signature = description.getSignatureString()
        lines = [f".. py:method:: {name}{signature}", ""]
    elif isinstance(description, Attribute):
        lines = [f".. py:attribute:: {name}", ""]
    else:  # pragma: no cover - zope declares only attributes and methods
        return []
    return lines + _indent(_doc_lines(description.__doc__)) + [""]


def _is_interface(obj):
    return isinstance(obj, InterfaceClass) and obj not in ROOTS


class _Base(SphinxDirective):
    required_arguments = 1
    has_content = False
    option_spec = {"no-index": directives.flag, "noindex": directives.flag}

    def render(self, lines, what):
        node = nodes.section()  # a throw-away parent: only its children are kept
        node.document = self.state.document
        source = f"{what} (generated by {__name__})"
        content = StringList(lines, source=source)
        self.state.nested_parse(content, self.content_offset, node)
        return node.children

    @property
    def no_index(self):
        return "no-index" in self.options or "noindex" in self.options

    def note_module(self, module):
        path = getattr(module, "__file__", None)
        if path:
            self.env.note_dependency(path)


class AutoInterface(_Base):
    """``.. autointerface:: module.IName``"""

    def run(self):
        modname, _, name = self.arguments[0].rpartition(".")
        module = importlib.import_module(modname)
        iface = getattr(module, name)
        if not _is_interface(iface):
            raise self.error(f"{self.arguments[0]} is not a zope Interface")
        self.note_module(module)
        return self.render(interface_lines(iface, self.no_index), self.arguments[0])


class AutoInterfaces(_Base):
    """``.. autointerfaces:: module``: every Interface defined in it, in source order."""

    def run(self):
        module = importlib.import_module(self.arguments[0])
        self.note_module(module)
        source = _Source.of(module)
        order = {name: i for i, name in enumerate(source.classes)}
        found = [obj for obj in vars(module).values()
                 if _is_interface(obj) and obj.__module__ == module.__name__]
        found.sort(key=lambda i: order.get(i.__name__, len(order)))
        lines = []
        for iface in found:
            lines += interface_lines(iface, self.no_index) + [""]
        return self.render(lines, self.arguments[0])


class AutoConstraints(_Base):
    """``.. autoconstraints:: module``: its ``#:``-documented values, with their source."""

    def run(self):
        modname = self.arguments[0]
        module = importlib.import_module(modname)
        self.note_module(module)
        analyzer = ModuleAnalyzer.for_module(modname)
        attr_docs = analyzer.find_attr_docs()
        source = _Source.of(module)
        names = [name for (scope, name) in attr_docs if scope == ""]
        names.sort(key=lambda n: analyzer.tagorder.get(n, 0))
        lines = []
        for name in names:
            lines += [f".. py:data:: {name}", f"   :module: {modname}"]
            value = source.assignment(name)
            if value is not None:
                lines.append(f"   :value: {' '.join(value.split())}")
            if self.no_index:
                lines.append("   :no-index:")
            lines.append("")
            lines += _indent([line.rstrip() for line in attr_docs[("", name)]]) + [""]
        return self.render(lines, modname)


def setup(app):
    app.add_directive_to_domain("py", "interface", PyInterface)
    app.add_directive("autointerface", AutoInterface)
    app.add_directive("autointerfaces", AutoInterfaces)
    app.add_directive("autoconstraints", AutoConstraints)
    return {"version": __version__, "parallel_read_safe": True, "parallel_write_safe": True}
