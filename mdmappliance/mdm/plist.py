"""A fast reader for the plain XML plists devices send, with plistlib as the judge.

``plistlib`` drives expat with a Python callback per element and per run of text: reading a
20-key DeviceInformation answer costs it about as much as the rest of the request's Python.
Here expat builds the element tree in C (``xml.etree``) and one walk turns it into values.

It reads only the plain shape (dict, array, key, string, integer, real, true, false, data in
a ``<plist>``, UTF-8, no comments, processing instructions or entity declarations, nesting
within the bound) and gives exactly what ``plistlib.loads`` gives for it: the same calls
convert each element's text. Anything else (a date, a quirk, an error of any kind) answers
``None``, and the caller reads the body with plistlib, whose result or error then decides,
so no input is judged differently from plistlib.
"""

from __future__ import annotations

import binascii
import re
from typing import Any
from xml.etree.ElementTree import Element, XMLParser

#: An XML declaration naming an encoding other than UTF-8: plistlib reads those.
_OTHER_ENCODING = re.compile(rb"encoding\s*=\s*[\"'](?!utf-8[\"'])", re.IGNORECASE)
_LEAVES = frozenset({"string", "integer", "real", "true", "false", "data"})


class _NotPlain(Exception):
    """The body is not of the plain shape this reader takes."""


def read_plain_plist(body: bytes, max_depth: int) -> Any | None:
    """The plist's root value, or None when plistlib must read ``body`` (see the module)."""
    if not _plain_bytes(body):
        return None
    try:
        parser = XMLParser()
        parser.feed(body)
        root = parser.close()
        if root.tag != "plist" or len(root) != 1:
            return None
        return _value(root[0], 1, max_depth)
    except Exception:  # malformed, or not plain: plistlib's verdict is the one that counts
        return None


def _plain_bytes(body: bytes) -> bool:
    if not body.startswith(b"<"):
        return False  # a byte-order mark, UTF-16, leading space: plistlib's
    if body.startswith(b"<?xml"):
        end = body.find(b"?>")
        if end < 0 or _OTHER_ENCODING.search(body, 0, end):
            return False
        rest = end + 2
    else:
        rest = 0
    # plistlib refuses entity declarations; comments and processing instructions split
    # text differently: all are plistlib's to read.
    return body.find(b"<?", rest) < 0 and b"<!--" not in body and b"<!ENTITY" not in body


def _value(element: Element, depth: int, max_depth: int) -> Any:
    if depth > max_depth:
        raise _NotPlain  # plistlib reads it, and the depth check refuses it with its words
    tag = element.tag
    if tag in _LEAVES:
        return _leaf(element, tag)
    if tag == "dict":
        children = list(element)
        if len(children) % 2:
            raise _NotPlain
        d: dict[str, Any] = {}
        for i in range(0, len(children), 2):
            key, value = children[i], children[i + 1]
            if key.tag != "key" or len(key) or value.tag == "key":
                raise _NotPlain
            d[key.text or ""] = _value(value, depth + 1, max_depth)
        return d
    if tag == "array":
        return [_value(child, depth + 1, max_depth) for child in element]
    raise _NotPlain  # a date, or an element plistlib treats in its own way


def _leaf(element: Element, tag: str) -> Any:
    """A leaf's value, by the conversion plistlib applies to the same text."""
    if len(element):
        raise _NotPlain
    text = element.text or ""
    if tag == "string":
        return text
    if tag == "integer":
        return int(text, 16) if text.startswith(("0x", "0X")) else int(text)
    if tag == "true":
        return True
    if tag == "false":
        return False
    if tag == "real":
        return float(text)
    return binascii.a2b_base64(text.encode("utf-8"))
