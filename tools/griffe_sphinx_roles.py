"""Griffe extension: render the reST roles of the docstrings (:class:`X`, :func:`~a.b.f`, ...).

Markdown shows ":class:" literally. Each role becomes an optional autorefs link: a link when the
target is documented on the site, plain code otherwise (so a strict build never fails on one).
Unqualified names are looked up from the object, its parent and its module, then as full paths.
"""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|obj|exc|const):`(~?)([\w.]+)(\(\))?`")


def _resolve(obj: griffe.Object, name: str) -> str:
    for scope in (obj, obj.parent, obj.module):
        if scope is None:
            continue
        try:
            member = scope.get_member(name)
        except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            continue
        return member.target_path if member.is_alias else member.path
    return name


def _convert(obj: griffe.Object) -> None:
    docstring = obj.docstring
    if docstring is None or ":`" not in docstring.value:
        return

    def link(m: re.Match) -> str:
        tilde, name, call = m.groups()
        shown = (name.rsplit(".", 1)[-1] if tilde else name) + (call or "")
        target = _resolve(obj, name)
        return f'<autoref identifier="{target}" optional><code>{shown}</code></autoref>'

    docstring.value = ROLE.sub(link, docstring.value)


class SphinxRoles(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        _convert(pkg)

    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        _convert(obj)
