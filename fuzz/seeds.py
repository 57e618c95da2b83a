#!/usr/bin/env python3
"""Writes the seed corpora in fuzz/corpus/<target>/ (run from anywhere; the
files are committed, so run it again only when the sources change).

Seeds come from the conformance cases (fixtures/cases/*.toml: raw requests,
chunked bodies, the invalid chunk lines), the request-smuggling shapes of
`isapi-harness smuggle`, the response heads the fixtures send, and the
shipped pyisapie.toml. Each target's first bytes select its mode (see the
target's `input` function)."""
import hashlib
import pathlib
import re
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"


def put(target, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


def cases():
    for path in sorted((ROOT / "fixtures" / "cases").glob("*.toml")):
        case = tomllib.loads(path.read_text())
        for step in case.get("step", []):
            send = step.get("send")
            if isinstance(send, str):
                yield send.encode("latin-1", "replace")


SMUGGLE = [
    # CL.TE, TE.CL, TE.TE with obfuscated Transfer-Encoding, duplicate
    # Content-Length, bare LF, obs-fold, a pipelined second request.
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\nContent-Length: 4\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-encoding: x\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
    b"POST / HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;a=\"b\\\"c\"\r\nabc\r\n0\r\nT: v\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
]

HEADS = [
    (b"200 OK", b"Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"),
    (b"HTTP/1.1 404 Not Found", b"Content-Type: text/html\r\n\r\n"),
    (b"302", b"Location: /x\nSet-Cookie: a=b\n\n"),
    (b"200 OK", b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    (b"", b"Status: 201 Created\r\nConnection: close\r\n\r\n"),
    (b"500 Oops", b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n"),
    (b"200 OK", b"X: 1\r\nbad line\r\nKeep-Alive: timeout=5\r\n"),
]


def head_and_body(raw):
    i = raw.find(b"\r\n\r\n")
    return (raw[: i + 4], raw[i + 4 :]) if i >= 0 else (raw, b"")


def main():
    requests = list(cases()) + SMUGGLE
    for i, raw in enumerate(requests):
        put("request_head", bytes([i % 4]) + raw)
        head, body = head_and_body(raw)
        if b"chunked" in head.lower() and body:
            put("request_framing", bytes([(i % 4) << 2, 1 + i % 7]) + body)
            put("chunked_response", bytes([0, 1 + i % 5]) + body)
    for i, (status, headers) in enumerate(HEADS):
        put("response_head", bytes([i % 2, 0, 0]) + status + b"\0" + headers)
        put("response_head", bytes([1, len(status) + 1, 4]) + status + b"\0" + headers)
        # Any bytes do for the structured modes.
        put("response_head", bytes([2, 0, 0]) + status + headers)
    for i, code in enumerate(range(29)):
        put("ssf_decode", bytes([code]) + hashlib.sha256(bytes([i])).digest() * 4)
    put("ssf_decode", bytes([255, 0x39, 0x05, 0, 0]) + b"\x01" * 64)
    for i, raw in enumerate(SMUGGLE + requests[:20]):
        put("server_variables", raw)
    shipped = (ROOT / "ci" / "package-windows" / "pyisapie.toml").read_bytes()
    for flags in (0, 2):
        put("pyisapie_config", bytes([flags]) + shipped)
        put("pyisapie_config", bytes([flags]) + b'[[app]]\nprefix = "/"\ncallable = "m:app"\n')
        put("pyisapie_config", bytes([flags]) + b'optimize = 2\npython_path = ["lib", "/abs"]\n[[app]]\nprefix = "/api"\ncallable = "api:make(\'x\', debug=False)"\n[[app]]\nprefix = "/"\ncallable = "site:application"\n')
    put("pyisapie_config", bytes([1]) + shipped)


if __name__ == "__main__":
    main()
