"""Variable substitution in Dockerfile words, with docker's rules (BuildKit's shell lexer).

- `$VAR`, `${VAR}`; `${VAR:-word}` (unset or empty -> word), `${VAR-word}` (unset ->
  word), `${VAR:+word}` / `${VAR+word}` (set -> word), `${VAR:?msg}` / `${VAR?msg}`
  (error), and the pattern forms `${VAR#pat}`, `##`, `%`, `%%`, `${VAR/pat/repl}`, `//`.
- Outside quotes the escape character makes the next character literal; inside
  double quotes it only escapes `"`, `$` and itself; single quotes are literal.
- `words()` splits on unquoted whitespace (ENV/LABEL pairs, COPY sources); `word()`
  keeps one word (quotes removed). An unset variable expands to nothing.
"""

from __future__ import annotations

import fnmatch
import re

from dockyard.errors import InvalidArgument

_NAME_START = re.compile(r"[A-Za-z_]")
_NAME_CHAR = re.compile(r"[A-Za-z0-9_]")


class ExpandError(InvalidArgument):
    pass


class _Lexer:
    def __init__(self, text: str, env: dict[str, str], escape: str, *, quotes: bool = True):
        self.s = text
        self.i = 0
        self.env = env
        self.esc = escape
        self.quotes = quotes  # False: quotes are kept as characters (JSON form)
        self.used: set[str] = set()

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def next(self) -> str:
        ch = self.peek()
        self.i += 1
        return ch

    # -- words --------------------------------------------------------------------

    def words(self, split: bool) -> list[str]:
        out: list[str] = []
        cur: list[str] = []
        in_word = False
        while self.i < len(self.s):
            ch = self.peek()
            if split and ch in " \t\n":
                self.i += 1
                if in_word:
                    out.append("".join(cur))
                    cur, in_word = [], False
                continue
            in_word = True
            if ch == self.esc:
                self.i += 1
                if self.i >= len(self.s):
                    break
                cur.append(self.next())
            elif ch == "'" and self.quotes:
                self.i += 1
                cur.append(self._single())
            elif ch == '"' and self.quotes:
                self.i += 1
                cur.append(self._double())
            elif ch == "$":
                cur.append(self._dollar())  # docker does not split expanded values
            else:
                cur.append(self.next())
        if in_word:
            out.append("".join(cur))
        return out

    def _single(self) -> str:
        end = self.s.find("'", self.i)
        if end < 0:
            raise ExpandError("unexpected end of statement while looking for matching "
                              "single-quote")
        text = self.s[self.i:end]
        self.i = end + 1
        return text

    def _double(self) -> str:
        out: list[str] = []
        while True:
            if self.i >= len(self.s):
                raise ExpandError("unexpected end of statement while looking for matching "
                                  "double-quote")
            ch = self.peek()
            if ch == '"':
                self.i += 1
                return "".join(out)
            if ch == "$":
                out.append(self._dollar())
                continue
            self.i += 1
            if ch == self.esc:
                nxt = self.peek()
                if nxt == "":
                    continue
                if nxt in ('"', "$", self.esc):
                    ch = self.next()
            out.append(ch)

    def _name(self) -> str:
        start = self.i
        if self.i < len(self.s) and self.s[self.i].isdigit():
            self.i += 1
            return self.s[start:self.i]
        while self.i < len(self.s) and _NAME_CHAR.match(self.s[self.i]):
            self.i += 1
        return self.s[start:self.i]

    def _lookup(self, name: str) -> str | None:
        self.used.add(name)
        return self.env.get(name)

    def _dollar(self) -> str:
        self.i += 1  # the $
        ch = self.peek()
        if ch == "{":
            self.i += 1
            return self._braced()
        if ch and (_NAME_START.match(ch) or ch.isdigit()):
            name = self._name()
            return self._lookup(name) or ""
        return "$"

    def _word_until(self, stops: str) -> str:
        """A word inside ${...}: expanded, quotes processed, up to a stop character."""
        out: list[str] = []
        while True:
            ch = self.peek()
            if ch == "":
                raise ExpandError("syntax error: missing '}'")
            if ch in stops:
                return "".join(out)
            if ch == self.esc:
                self.i += 1
                out.append(self.next())
            elif ch == "$":
                out.append(self._dollar())
            elif ch == "'" and self.quotes:
                self.i += 1
                out.append(self._single())
            elif ch == '"' and self.quotes:
                self.i += 1
                out.append(self._double())
            else:
                out.append(self.next())

    def _braced(self) -> str:
        name = self._name()
        if not name:
            raise ExpandError("bad substitution")
        ch = self.peek()
        if ch == "":
            raise ExpandError("syntax error: missing '}'")
        if ch == "}":
            self.i += 1
            return self._lookup(name) or ""
        value = self._lookup(name)
        colon = False
        if ch == ":":
            colon = True
            self.i += 1
            ch = self.peek()
        if ch in ("-", "+", "?"):
            self.i += 1
            word = self._word_until("}")
            self.i += 1
            is_set = value is not None and (value != "" or not colon)
            if ch == "-":
                return value if is_set else word  # type: ignore[return-value]
            if ch == "+":
                return word if is_set else ""
            if not is_set:
                raise ExpandError(f"{name}: {word or 'is not allowed to be unset'}")
            return value  # type: ignore[return-value]
        if colon:
            raise ExpandError(f"unsupported modifier (:{ch}) in substitution")
        if ch in ("#", "%"):
            self.i += 1
            greedy = self.peek() == ch
            if greedy:
                self.i += 1
            pattern = self._word_until("}")
            self.i += 1
            return _trim(value or "", pattern, ch == "#", greedy)
        if ch == "/":
            self.i += 1
            every = self.peek() == "/"
            if every:
                self.i += 1
            pattern = self._word_until("/}")
            repl = ""
            if self.peek() == "/":
                self.i += 1
                repl = self._word_until("}")
            self.i += 1
            return _replace(value or "", pattern, repl, every)
        raise ExpandError(f"unsupported modifier ({ch}) in substitution")


def _trim(value: str, pattern: str, prefix: bool, greedy: bool) -> str:
    ends = range(len(value) + 1)
    order = list(reversed(ends)) if greedy else list(ends)
    for n in order:
        part = value[:n] if prefix else value[len(value) - n:]
        if fnmatch.fnmatchcase(part, pattern):
            return value[n:] if prefix else value[:len(value) - n]
    return value


def _replace(value: str, pattern: str, repl: str, every: bool) -> str:
    out, i = [], 0
    while i <= len(value):
        for j in range(len(value), i, -1):
            if fnmatch.fnmatchcase(value[i:j], pattern):
                out.append(repl)
                i = j
                if not every:
                    return "".join(out) + value[i:]
                break
        else:
            if i < len(value):
                out.append(value[i])
            i += 1
    return "".join(out)


def word(text: str, env: dict[str, str], escape: str = "\\") -> str:
    """One word: variables expanded, quotes and escapes removed."""
    return "".join(_Lexer(text, env, escape).words(split=False))


def words(text: str, env: dict[str, str], escape: str = "\\") -> list[str]:
    """Words split on unquoted whitespace, each expanded (quotes removed)."""
    return _Lexer(text, env, escape).words(split=True)


def word_keep_quotes(text: str, env: dict[str, str], escape: str = "\\") -> str:
    """Expand variables only (JSON-form elements: quotes are plain characters)."""
    return "".join(_Lexer(text, env, escape, quotes=False).words(split=False))


def used_names(text: str, env: dict[str, str], escape: str = "\\") -> set[str]:
    lex = _Lexer(text, env, escape)
    try:
        lex.words(split=True)
    except ExpandError:
        pass
    return lex.used
