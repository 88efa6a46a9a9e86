"""custom-headers: response headers an Ingress's ConfigMap adds to every answer of its paths
(docs/behaviour.md, "Custom response headers").

ingress-nginx writes one headers-more `more_set_headers "Name: value";` per ConfigMap entry,
which applies to every status and content type and replaces a header of the same name: the
upstream's copies are dropped, not repeated.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.core.headers import Headers


@dataclass(frozen=True, slots=True)
class ResponseHeaders:
    names: frozenset[bytes]  # lower case, to drop from the upstream's answer
    lines: bytes  # "Name: value\r\n" each, in ConfigMap key order (as Go's template ranges)

    @classmethod
    def of(cls, headers: dict[str, str]) -> ResponseHeaders:
        lines = b"".join(
            b"%s: %s\r\n" % (name.encode("latin-1"), headers[name].encode("latin-1"))
            for name in sorted(headers)
        )
        return cls(frozenset(name.lower().encode("latin-1") for name in headers), lines)

    def replaced(self, headers: Headers) -> Headers:
        """The upstream's headers without those these replace."""
        names = self.names
        return [pair for pair in headers if pair[0].lower() not in names]

    def strip(self, lines: bytes) -> bytes:
        """Header `lines` ("Name: value\r\n" each) without those these replace: CORS headers
        set before them in nginx.tmpl's location, which a ConfigMap entry of the same name
        overrides."""
        kept = [
            line + b"\r\n"
            for line in lines.split(b"\r\n")[:-1]
            if line.split(b":", 1)[0].lower() not in self.names
        ]
        return b"".join(kept)

    def on_own_answer(self, answer: bytes) -> bytes:
        """A complete answer of the proxy's own with these headers after its status line, and
        its own headers of the same names (Content-Type, a redirect's Location) replaced."""
        head_end = answer.index(b"\r\n\r\n") + 2
        status_end = answer.index(b"\r\n") + 2
        kept = [
            line + b"\r\n"
            for line in answer[status_end : head_end - 2].split(b"\r\n")
            if line.split(b":", 1)[0].lower() not in self.names
        ]
        return answer[:status_end] + self.lines + b"".join(kept) + answer[head_end:]
