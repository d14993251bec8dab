"""Protocol buffers' text format, as vpython specs use it, without a schema.

Fields are `name: value`; messages `name: < ... >`, `name < ... >`, `name { ... }` or
`name: { ... }`; repeated values `name: [v, v]`; strings in double or single quotes with C
escapes (adjacent strings join); `#` comments; `,` or `;` may follow a field. Everything
parses to Field values: which names mean something is the caller's business, so unknown
fields and messages are kept and ignored there.
"""

from __future__ import annotations

MAX_DEPTH = 100  # messages nested deeper are an error, not a RecursionError

TOKEN_RE = r"""
    (?P<space>[ \t\r\f\v]+) | (?P<newline>\n) | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<number>[-+]?\.?[0-9][A-Za-z0-9_.+-]*)
  | (?P<punct>[:{}<>\[\],;-])
  | (?P<unterminated>["'])
"""
CLOSERS = {"{": "}", "<": ">"}
SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v",
                  "\\": "\\", "'": "'", '"': '"', "?": "?"}


class ParseError(ValueError):
    """A syntax error on line `line` (1-based) of the text."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


class Field:
    """`name: value` on line `line`: a string (`kind` "string", `text` its value), a bare
    scalar (`kind` "scalar": a number, an enum name, true/false, as written) or a message
    (`kind` "message", `fields`). A repeated field is one Field per value.
    """

    __slots__ = ("fields", "kind", "line", "name", "text")

    def __init__(self, name: str, line: int, kind: str, text: str = "", fields: list[Field] | None = None) -> None:
        self.name = name
        self.line = line
        self.kind = kind
        self.text = text
        self.fields = fields if fields is not None else []

    def last(self, name: str) -> Field | None:
        """The message's last field called `name` (protobuf: the last value of a singular field wins)."""
        found = [f for f in self.fields if f.name == name]
        return found[-1] if found else None

    def __repr__(self) -> str:
        value = self.fields if self.kind == "message" else self.text
        return f"Field({self.name!r}, {self.line}, {self.kind!r}, {value!r})"


class _Token:
    __slots__ = ("kind", "line", "text")

    def __init__(self, kind: str, text: str, line: int) -> None:
        self.kind = kind
        self.text = text
        self.line = line


def parse(text: str) -> list[Field]:
    """The top-level fields of `text`; raises ParseError."""
    parser = _Parser(_tokenize(text))
    fields = parser.message(None, 0)
    return fields


def _tokenize(text: str) -> list[_Token]:
    import re

    tokens = []
    line = 1
    pos = 0
    pattern = re.compile(TOKEN_RE, re.VERBOSE)
    while pos < len(text):
        m = pattern.match(text, pos)
        if m is None:
            raise ParseError(line, f"unexpected character {text[pos]!r}")
        kind = m.lastgroup or ""
        if kind == "unterminated":
            raise ParseError(line, "a string is not closed on its line")
        if kind == "newline":
            line += 1
        elif kind == "string":
            tokens.append(_Token(kind, _unescape(m.group()[1:-1], line), line))
        elif kind not in ("space", "comment"):
            tokens.append(_Token(kind, m.group(), line))
        pos = m.end()
    return tokens


def _unescape(body: str, line: int) -> str:
    """A string literal's value: C escapes; `\\ooo` and `\\xHH` are bytes of its UTF-8."""
    out = bytearray()
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            j = body.find("\\", i)
            j = len(body) if j < 0 else j
            out += body[i:j].encode()
            i = j
            continue
        e = body[i + 1]  # the token's regex never ends a string on a lone backslash
        i += 2
        if e in SIMPLE_ESCAPES:
            out += SIMPLE_ESCAPES[e].encode()
        elif e in "01234567":
            digits = _prefix_of(body[i - 1:i + 2], "01234567")  # one to three digits, `e` the first
            if int(digits, 8) > 0o377:
                raise ParseError(line, f"\\{digits} is more than a byte (\\377) in a string")
            out.append(int(digits, 8))
            i += len(digits) - 1
        elif e in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[e]
            digits = _prefix_of(body[i:i + width], "0123456789abcdefABCDEF")
            if not digits or (e != "x" and len(digits) != width):
                raise ParseError(line, f"bad escape \\{e}{body[i:i + width]} in a string")
            value = int(digits, 16)
            if e == "x":
                out.append(value)
            elif value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
                raise ParseError(line, f"\\{e}{digits} is not a Unicode character")
            else:
                out += chr(value).encode()
            i += len(digits)
        else:
            raise ParseError(line, f"unknown escape \\{e} in a string")
    try:
        return out.decode()
    except UnicodeDecodeError:
        raise ParseError(line, "a string's escapes make bytes that are not UTF-8") from None


def _prefix_of(text: str, allowed: str) -> str:
    n = 0
    while n < len(text) and text[n] in allowed:
        n += 1
    return text[:n]


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def accept(self, punct: str) -> _Token | None:
        token = self.peek()
        if token is not None and token.kind == "punct" and token.text == punct:
            self.pos += 1
            return token
        return None

    def message(self, opener: _Token | None, depth: int) -> list[Field]:
        """Fields up to the closer of `opener` (None: the end of the text)."""
        if depth > MAX_DEPTH:
            raise ParseError(opener.line if opener else 1, f"messages nested more than {MAX_DEPTH} deep")
        closer = CLOSERS[opener.text] if opener else None
        fields: list[Field] = []
        while True:
            token = self.peek()
            if token is None:
                if opener is None:
                    return fields
                raise ParseError(opener.line, f"the `{opener.text}` here is never closed by `{closer}`")
            self.pos += 1
            if token.kind == "punct" and token.text == closer:
                return fields
            if token.kind != "ident":
                expected = f"a field name or `{closer}` (for the `{opener.text}` on line {opener.line})" if opener \
                    else "a field name"
                raise ParseError(token.line, f"expected {expected}, found `{token.text}`")
            self.field(token, fields, depth)
            if not self.accept(","):
                self.accept(";")

    def field(self, name: _Token, out: list[Field], depth: int) -> None:
        colon = self.accept(":") is not None
        token = self.peek()
        if token is not None and token.kind == "punct" and token.text == "[":
            self.pos += 1
            if self.accept("]"):
                return
            while True:
                out.append(self.value(name, depth, colon=True))
                if self.accept("]"):
                    return
                if not self.accept(","):
                    found = self.peek()
                    raise ParseError(found.line if found else token.line,
                                     f"expected `,` or `]` in the list {name.text} (line {token.line}) starts, "
                                     f"found `{found.text if found else 'the end'}`")
        out.append(self.value(name, depth, colon))

    def value(self, name: _Token, depth: int, colon: bool) -> Field:
        token = self.peek()
        if token is None:
            raise ParseError(name.line, f"{name.text} has no value")
        if token.kind == "punct" and token.text in CLOSERS:
            self.pos += 1
            return Field(name.text, token.line, "message", fields=self.message(token, depth + 1))
        if not colon:
            raise ParseError(token.line, f"expected `:` after {name.text}, found `{token.text}`")
        self.pos += 1
        if token.kind == "string":
            text = token.text
            while (more := self.peek()) is not None and more.kind == "string":  # "a" "b" is "ab"
                text += more.text
                self.pos += 1
            return Field(name.text, token.line, "string", text)
        if token.kind in ("ident", "number"):
            return Field(name.text, token.line, "scalar", token.text)
        if token.text == "-" and (more := self.peek()) is not None and more.kind == "ident":  # -inf
            self.pos += 1
            return Field(name.text, token.line, "scalar", "-" + more.text)
        raise ParseError(token.line, f"expected a value for {name.text}, found `{token.text}`")
