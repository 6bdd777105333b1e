"""The check etcd's client makes of peer URLs before ``member add`` and ``member update``.

etcd's ``types.NewURLs``: each URL, trimmed of spaces, must parse as Go's
``net/url`` parses it (errors in its words: ``parse "http://x:y": invalid port
":y" after host``), have the scheme http, https, unix or unixs, a
``host:port`` address and no path.
"""

from __future__ import annotations

from collections.abc import Sequence

from synod.ctl.gostrconv import quote, trim_space

SCHEMES = ("http", "https", "unix", "unixs")
_HOST_PUNCTUATION = set("!$&'()*+,;=:[]<>\"-_.~")
_USERINFO = set("-._:~!$&'()*+,;=%@")


class URLError(ValueError):
    """A URL etcd's client refuses; the message is its own."""


def _unescape(text: str, host: bool) -> str:
    """net/url's unescape: %XX sequences decoded; in a host, only characters a host may hold."""
    out = bytearray()
    data = text.encode("utf-8", "surrogateescape")
    i = 0
    while i < len(data):
        b = data[i]
        if b == ord("%"):
            hexdigits = data[i + 1 : i + 3]
            if len(hexdigits) < 2 or not all(chr(c) in "0123456789abcdefABCDEF" for c in hexdigits):
                escape = data[i : i + 3].decode("utf-8", "surrogateescape")
                raise URLError(f"invalid URL escape {quote(escape)}")
            if host and int(hexdigits[:1], 16) < 8 and hexdigits != b"25":
                raise URLError(f"invalid URL escape {quote(data[i : i + 3].decode())}")
            out.append(int(hexdigits, 16))
            i += 3
            continue
        if host and b < 0x80 and not (chr(b).isalnum() or chr(b) in _HOST_PUNCTUATION):
            raise URLError(f"invalid character {quote(chr(b))} in host name")
        out.append(b)
        i += 1
    return out.decode("utf-8", "surrogateescape")


def _valid_optional_port(port: str) -> bool:
    if port == "":
        return True
    return port[0] == ":" and all("0" <= c <= "9" for c in port[1:])


def _parse_host(host: str) -> str:
    if host.startswith("["):
        end = host.rfind("]")
        if end < 0:
            raise URLError("missing ']' in host")
        port = host[end + 1 :]
    else:
        colon = host.rfind(":")
        port = host[colon:] if colon >= 0 else ""
    if not _valid_optional_port(port):
        raise URLError(f"invalid port {quote(port)} after host")
    return _unescape(host, host=True)


def _scheme(raw: str) -> tuple[str, str]:
    for i, c in enumerate(raw):
        if c.isascii() and c.isalpha():
            continue
        if c.isascii() and (c.isdigit() or c in "+-."):
            if i == 0:
                return "", raw
            continue
        if c == ":":
            if i == 0:
                raise URLError("missing protocol scheme")
            return raw[:i], raw[i + 1 :]
        return "", raw
    return "", raw


def go_parse_url(raw: str) -> tuple[str, str, str]:
    """Go's ``url.Parse``: (scheme, host, path); URLError in Go's words."""
    text, _, fragment = raw.partition("#")
    try:
        scheme, host, path = _parse(text)
    except URLError as e:
        raise URLError(f"parse {quote(text)}: {e}") from None
    if fragment:
        try:
            _unescape(fragment, host=False)
        except URLError as e:
            raise URLError(f"parse {quote(raw)}: {e}") from None
    return scheme, host, path


def _parse(raw: str) -> tuple[str, str, str]:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise URLError("net/url: invalid control character in URL")
    if raw == "*":
        return "", "", "*"
    scheme, rest = _scheme(raw)
    scheme = scheme.lower()
    # A query is not checked; a lone "?" at the end is dropped.
    rest = rest[:-1] if rest.endswith("?") and rest.count("?") == 1 else rest.partition("?")[0]
    if not rest.startswith("/"):
        if scheme:
            return scheme, "", ""  # opaque
        if ":" in rest.partition("/")[0]:
            raise URLError("first path segment in URL cannot contain colon")
    host = ""
    if rest.startswith("//") and (scheme or not rest.startswith("///")):
        authority, slash, path = rest[2:].partition("/")
        rest = slash + path
        at = authority.rfind("@")
        host = _parse_host(authority[at + 1 :])
        if at >= 0 and not all((c.isascii() and c.isalnum()) or c in _USERINFO for c in authority[:at]):
            raise URLError("net/url: invalid userinfo")
    return scheme, host, _unescape(rest, host=False)


def _has_host_port(hostport: str) -> bool:
    """Whether Go's ``net.SplitHostPort`` accepts the address."""
    colon = hostport.rfind(":")
    if colon < 0:
        return False
    start, after = 0, 0
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0 or end + 1 != colon:
            return False
        start, after = 1, end + 1
    elif ":" in hostport[:colon]:
        return False
    return "[" not in hostport[start:] and "]" not in hostport[after:]


def check_urls(urls: Sequence[str]) -> None:
    """etcd's ``types.NewURLs`` check; URLError with its message."""
    if not urls:
        raise URLError("no valid URLs given")
    for url in urls:
        text = trim_space(url.encode("utf-8", "surrogateescape")).decode("utf-8", "surrogateescape")
        scheme, host, path = go_parse_url(text)
        if scheme not in SCHEMES:
            raise URLError(f"URL scheme must be http, https, unix, or unixs: {text}")
        if not _has_host_port(host):
            raise URLError(f'URL address does not have the form "host:port": {text}')
        if path != "":
            raise URLError(f"URL must not contain a path: {text}")
