"""The XML of a gateway-config, parsed safely into a tree of elements with line numbers.

defusedxml's SAX parser refuses DTDs, entities and external references; the file is opened
here, so SAX never treats its name as a URL to fetch. Kaazing's namespaces are accepted
(and optional); any other namespace is a problem with its line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.sax import SAXException, handler
from xml.sax.xmlreader import AttributesNSImpl, InputSource, Locator

import defusedxml.sax
from defusedxml import DefusedXmlException

from kgateway.config.model import ConfigError, Problem

KAAZING_NAMESPACES = frozenset(
    {
        "http://xmlns.kaazing.org/2016/06/gateway",
        "http://xmlns.kaazing.org/2014/09/gateway",
        "http://xmlns.kaazing.com/2016/06/gateway",
    }
)



@dataclass
class Element:
    """An XML element with its line number; text is the concatenated character data."""

    tag: str
    line: int
    children: list[Element] = field(default_factory=list)
    text: str = ""

    def findall(self, tag: str) -> list[Element]:
        return [c for c in self.children if c.tag == tag]

    def find(self, tag: str) -> Element | None:
        found = self.findall(tag)
        return found[0] if found else None


class _TreeBuilder(handler.ContentHandler):
    def __init__(self, filename: str, problems: list[Problem]) -> None:
        super().__init__()
        self.filename = filename
        self.problems = problems
        self.locator: Locator | None = None
        self.stack: list[Element] = []
        self.root: Element | None = None

    def setDocumentLocator(self, locator: Locator) -> None:
        self.locator = locator

    def startElementNS(
        self, name: tuple[str | None, str], qname: str | None, attrs: AttributesNSImpl
    ) -> None:
        uri, local = name
        line = (self.locator.getLineNumber() or 0) if self.locator else 0
        if uri is not None and uri not in KAAZING_NAMESPACES:
            self.problems.append(
                Problem(self.filename, line, f"unknown XML namespace {uri!r} on <{local}>")
            )
        element = Element(local, line)
        if self.stack:
            self.stack[-1].children.append(element)
        else:
            self.root = element
        self.stack.append(element)

    def endElementNS(self, name: tuple[str | None, str], qname: str | None) -> None:
        element = self.stack.pop()
        element.text = element.text.strip()

    def characters(self, content: str) -> None:
        if self.stack:
            self.stack[-1].text += content


def parse_xml(path: str) -> Element:
    """Parse *path* safely (no DTDs, entities or external fetches) keeping line numbers."""
    problems: list[Problem] = []
    builder = _TreeBuilder(path, problems)
    parser = defusedxml.sax.make_parser()
    parser.setFeature(handler.feature_namespaces, True)
    parser.setFeature(handler.feature_external_ges, False)
    parser.setContentHandler(builder)
    try:
        # Open the file ourselves: given a string, SAX would treat it as a URL and fetch it.
        with open(path, "rb") as f:
            source = InputSource(path)
            source.setByteStream(f)
            parser.parse(source)
    except DefusedXmlException as e:
        line = (builder.locator.getLineNumber() or 0) if builder.locator else 0
        raise ConfigError([Problem(path, line, f"forbidden XML construct: {e}")]) from e
    except SAXException as e:
        line = getattr(e, "getLineNumber", lambda: 0)()
        raise ConfigError([Problem(path, line, f"not well-formed XML: {e.getMessage()}")]) from e
    except OSError as e:
        raise ConfigError([Problem(path, 0, f"cannot read configuration: {e.strerror}")]) from e
    if problems:
        raise ConfigError(problems)
    assert builder.root is not None
    return builder.root
