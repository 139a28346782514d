# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""GRUB's default files as the POSIX shell reads them, edited token by token (stdlib only).

grub-mkconfig sources /etc/default/grub and then /etc/default/grub.d/*.cfg (grub_sources());
shell_assignments() lexes the ``NAME=value`` lines of such a file (quotes, escapes, expansions,
values over several lines); grub_line() is the command line a normal entry gets;
edit_grub_files() puts owned arguments on it, changing only the values' bytes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.vfio.avic.plugins.module_utils.parse import cmdline as cmdline_parse

GRUB_DEFAULT_FILE = '/etc/default/grub'
GRUB_DROPIN_DIR = '/etc/default/grub.d'
GRUB_LINUX = 'GRUB_CMDLINE_LINUX'
GRUB_VARIABLE = 'GRUB_CMDLINE_LINUX_DEFAULT'


class ShellParseError(ValueError):
    """A GRUB file that cannot be read or edited safely (the message names the file and line)."""


_ASSIGN = re.compile(r'[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)=')
_STOP = ' \t\n;&|<>()'
_DQ_ESCAPES = '$`"\\\n'


class _Assignment(object):
    """One ``NAME=value`` of a shell file: the value's span and its characters.

    ``chars`` are (literal, raw_start, raw_end, context) with context 'u' (unquoted), 'd' (double
    quotes), 's' (single quotes) or 'x' (an expansion such as $VAR, kept as its raw text).
    """

    def __init__(self, path, name, start, end, chars, line):
        self.path, self.name, self.start, self.end = path, name, start, end
        self.chars, self.line = chars, line
        self._tokens = None

    def tokens(self):
        """Kernel arguments of the value: dicts with text, key (None if opaque), rs, re, ctx."""
        if self._tokens is None:
            self._tokens = self._split()
        return self._tokens

    def _split(self):
        out, cur, quoted = [], [], False

        def flush():
            if cur:
                opaque = any(c[3] == 'x' for c in cur)
                text = ''.join(c[0] for c in cur)
                out.append({'text': text, 'key': None if opaque else cmdline_parse.arg_key(text),
                            'rs': cur[0][1], 're': cur[-1][2], 'ctx': cur[-1][-1], 'chars': list(cur)})
                del cur[:]
        for char in self.chars:
            lit, ctx = char[0], char[3]
            if ctx != 'x' and lit == '"':
                quoted = not quoted
            elif ctx != 'x' and lit.isspace() and not quoted:
                flush()
                continue
            cur.append(char)
        flush()
        return out


def _expansion_end(text, pos):
    """End of the expansion starting with '$' or '`' at ``pos`` (None: a literal '$')."""
    n = len(text)
    if text[pos] == '`':
        end = text.find('`', pos + 1)
        return None if end < 0 else end + 1
    if pos + 1 >= n:
        return None
    nxt = text[pos + 1]
    if nxt in '{(':
        close = '}' if nxt == '{' else ')'
        depth, i = 0, pos + 1
        while i < n:
            if text[i] == nxt:
                depth += 1
            elif text[i] == close:
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        return None
    match = re.compile(r'[A-Za-z_][A-Za-z0-9_]*|[0-9@*#?$!-]').match(text, pos + 1)
    return match.end() if match else None


def _parse_value(text, pos, path, name, line):
    """The shell word that starts at ``pos`` (right after ``NAME=``)."""
    chars, i, n, ctx = [], pos, len(text), 'u'

    def fail(why):
        raise ShellParseError('cannot parse the value of %s in %s line %d (%s): fix its quoting'
                              % (name, path, line, why))
    while i < n:
        char = text[i]
        if ctx == 'u':
            if char in _STOP:
                break
            if char == '\\':
                if i + 1 < n and text[i + 1] != '\n':
                    chars.append((text[i + 1], i, i + 2, 'u'))
                i += 2
                continue
            if char == '"':
                ctx, i = 'd', i + 1
                continue
            if char == "'":
                ctx, i = 's', i + 1
                continue
        elif ctx == 's':
            if char == "'":
                ctx, i = 'u', i + 1
                continue
            chars.append((char, i, i + 1, 's'))
            i += 1
            continue
        else:
            if char == '"':
                ctx, i = 'u', i + 1
                continue
            if char == '\\' and i + 1 < n and text[i + 1] in _DQ_ESCAPES:
                if text[i + 1] != '\n':
                    chars.append((text[i + 1], i, i + 2, 'd'))
                i += 2
                continue
        if char in '$`':
            end = _expansion_end(text, i)
            if end is not None:
                chars.append((text[i:end], i, end, 'x', ctx))
                i = end
                continue
            if char == '`':
                fail('unterminated `')
        chars.append((char, i, i + 1, ctx))
        i += 1
    if ctx != 'u':
        fail('unterminated %s quote' % ('double' if ctx == 'd' else 'single'))
    return _Assignment(path, name, pos, i, chars, line)


def shell_assignments(text, path=GRUB_DEFAULT_FILE):
    """Every ``NAME=value`` that starts a line of a shell file such as /etc/default/grub."""
    out, pos, n = [], 0, len(text)
    while pos < n:
        match = _ASSIGN.match(text, pos)
        if match:
            value = _parse_value(text, match.end(), path, match.group(1), text.count('\n', 0, pos) + 1)
            out.append(value)
            eol = text.find('\n', value.end)
        else:
            eol = text.find('\n', pos)
        pos = n if eol < 0 else eol + 1
    return out


def _self_reference(token, name):
    return token['key'] is None and token['text'] in ('$%s' % name, '${%s}' % name)


def _parse_sources(sources):
    return [a for path, text in sources for a in shell_assignments(text, path)]


def _effective(parsed, name):
    """The arguments ``name`` ends with once every assignment of ``parsed`` ran, each as
    (assignment, token); a self-reference ($NAME) stands for the value before."""
    value = []
    for assignment in parsed:
        if assignment.name != name:
            continue
        new = []
        for token in assignment.tokens():
            if _self_reference(token, name):
                new.extend(value)
            else:
                new.append((assignment, token))
        value = new
    return value


def _winner(parsed, name):
    """The last assignment of ``name`` (the one that wins), or None."""
    last = None
    for assignment in parsed:
        if assignment.name == name:
            last = assignment
    return last


def grub_sources(read, listdir):
    """(path, text) of the files grub-mkconfig sources, in its order: /etc/default/grub, then
    /etc/default/grub.d/*.cfg sorted (Debian and Ubuntu; cloud images set the command line
    there). ``read`` returns a file's text or None, ``listdir`` a directory's names."""
    sources = []
    main = read(GRUB_DEFAULT_FILE)
    if main is not None:
        sources.append((GRUB_DEFAULT_FILE, main))
    for name in sorted(listdir(GRUB_DROPIN_DIR) or []):
        if name.endswith('.cfg'):
            text = read('%s/%s' % (GRUB_DROPIN_DIR, name))
            if text is not None:
                sources.append(('%s/%s' % (GRUB_DROPIN_DIR, name), text))
    return sources


def _line(parsed):
    return ' '.join(t['text'] for _a, t in _effective(parsed, GRUB_LINUX) + _effective(parsed, GRUB_VARIABLE))


def grub_line(sources):
    """The arguments GRUB puts on a normal entry: GRUB_CMDLINE_LINUX then
    GRUB_CMDLINE_LINUX_DEFAULT, as they end after every source."""
    return _line(_parse_sources(sources))


def _dq(text):
    return ''.join('\\' + c if c in '"\\$`' else c for c in text)


def _rewrite(assignment, text, actions, tail):
    """The new raw value of ``assignment`` (None when it stays as it is)."""
    raw = text[assignment.start:assignment.end]
    base = assignment.start
    tokens = assignment.tokens()
    edits = []
    for index, (token, act) in enumerate(zip(tokens, actions)):
        if act is None or act == token['text']:
            continue
        if act is False:
            if index > 0:
                edits.append((tokens[index - 1]['re'] - base, token['re'] - base, ''))
            elif index + 1 < len(tokens):
                edits.append((token['rs'] - base, tokens[index + 1]['rs'] - base, ''))
            else:
                edits.append((token['rs'] - base, token['re'] - base, ''))
        else:
            edits.append((token['rs'] - base, token['re'] - base, act))
    kept = [t for t, a in zip(tokens, actions) if a is not False]
    if tail:
        words = ' '.join(tail)
        if tokens:
            at, ctx = tokens[-1]['re'] - base, tokens[-1]['ctx']
        elif raw[-1:] in ('"', "'") and len(raw) >= 2:
            at, ctx = len(raw) - 1, 'd'
        else:
            at, ctx = len(raw), 'u'
        words = (' ' if kept else '') + words
        if ctx == 'u':
            words = '"%s"' % words
        edits.append((at, at, words))
    if not edits:
        return None
    edits.sort(key=lambda e: (e[0], e[1]))
    merged = []
    for start, end, repl in edits:
        if merged and start < merged[-1][1] and not repl and not merged[-1][2]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]), '')
        else:
            merged.append((start, end, repl))
    out, cursor = [], 0
    for start, end, repl in merged:
        out.append(raw[cursor:max(cursor, start)])
        out.append(repl)
        cursor = max(cursor, end)
    out.append(raw[cursor:])
    new_raw = ''.join(out)
    expected = [t['text'] if a is None else a for t, a in zip(tokens, actions) if a is not False] + tail
    if '"' not in raw and "'" not in raw and any(e[2] for e in merged):
        new_raw = None  # an unquoted value takes no space: quote the whole value below
    if new_raw is None or _value_words(new_raw) != expected:
        parts = []
        for token, act in zip(tokens, actions):
            if act is False:
                continue
            if act is None:
                parts.append(''.join(c[0] if c[3] == 'x' else _dq(c[0]) for c in token['chars']))
            else:
                parts.append(act)
        new_raw = '"%s"' % ' '.join(parts + list(tail))
        if _value_words(new_raw) != expected:
            raise ShellParseError('cannot edit %s in %s line %d safely: put %s there by hand'
                                  % (assignment.name, assignment.path, assignment.line, ' '.join(tail) or
                                     'the arguments'))
    return new_raw


def _value_words(raw):
    try:
        value = _parse_value(raw, 0, 'the new value', 'the value', 1)
    except ShellParseError:
        return None
    if value.end != len(raw):
        return None
    return [t['text'] for t in value.tokens()]


def edit_grub_files(sources, ensure, remove_keys=()):
    """Put ``ensure`` on the GRUB command line of ``sources`` (grub_sources()), token by token.

    The arguments of GRUB_CMDLINE_LINUX and GRUB_CMDLINE_LINUX_DEFAULT are taken together, as
    GRUB joins them: an owned argument already in GRUB_CMDLINE_LINUX stays there (replaced in place
    when its value differs) and is not added twice; new ones go to the GRUB_CMDLINE_LINUX_DEFAULT
    that wins (the last one sourced, a /etc/default/grub.d/*.cfg file on Ubuntu cloud images), or
    a new line at the end of /etc/default/grub. Only the values' bytes change; every other
    argument, line, comment and text after a closing quote stays as it was.

    Returns {texts: {path: new text} of the files that change, before, after (the joined lines),
    path: the file new arguments go to, notes: [what the caller should say]}.
    """
    sources = list(sources) or [(GRUB_DEFAULT_FILE, '')]
    for path, text in sources:
        if '\r' in text:
            raise ShellParseError('%s has Windows (CRLF) line ends: the shell that grub-mkconfig runs reads '
                                  'each \\r into the values, so the kernel would get broken arguments. '
                                  'Convert the file (dos2unix %s, or sed -i "s/\\r$//" %s) and run again; '
                                  'nothing was changed' % (path, path, path))
    original = dict(sources)
    parsed = _parse_sources(sources)
    flat = _effective(parsed, GRUB_LINUX) + _effective(parsed, GRUB_VARIABLE)
    counts = {}
    for _assignment, token in flat:
        counts[id(token)] = counts.get(id(token), 0) + 1
    actions, tail = cmdline_parse.plan_tokens([None if counts[id(t)] > 1 else t['key'] for _a, t in flat],
                                              ensure, remove_keys)
    by_token = dict((id(t), act) for (_a, t), act in zip(flat, actions))
    winner = _winner(parsed, GRUB_VARIABLE)
    texts = dict(sources)
    for assignment in sorted(parsed, key=lambda a: -a.start):
        add = tail if assignment is winner else []
        token_actions = [by_token.get(id(t)) for t in assignment.tokens()]
        if all(act is None for act in token_actions) and not add:
            continue
        text = texts[assignment.path]
        new_raw = _rewrite(assignment, text, token_actions, add)
        if new_raw is not None:
            texts[assignment.path] = text[:assignment.start] + new_raw + text[assignment.end:]
    if winner is None and tail:
        main = texts.get(GRUB_DEFAULT_FILE, '')
        texts[GRUB_DEFAULT_FILE] = main + ('' if not main or main.endswith('\n') else '\n') + \
            '%s="%s"\n' % (GRUB_VARIABLE, ' '.join(tail))
    path = winner.path if winner is not None else GRUB_DEFAULT_FILE
    notes = []
    if path != GRUB_DEFAULT_FILE:
        notes.append('%s sets %s after %s and wins: the arguments belong there'
                     % (path, GRUB_VARIABLE, GRUB_DEFAULT_FILE))
    changed = dict((p, t) for p, t in texts.items() if t != original.get(p))
    order = [p for p, _t in sources] + [p for p in texts if p not in original]
    return {'texts': changed, 'before': _line(parsed),
            'after': grub_line([(p, texts[p]) for p in order]), 'path': path, 'notes': notes}


def grub_next_boot(read, listdir):
    """grub_line() of the files grub-mkconfig sources (for the facts), None if unreadable."""
    try:
        return grub_line(grub_sources(read, listdir))
    except ShellParseError:
        return None
