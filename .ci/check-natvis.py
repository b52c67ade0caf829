#!/usr/bin/env python3
"""Checks driver/wfpcallout.natvis against the driver's real types.

WinDbg drops a NatVis visualizer whose expressions name a field that does
not exist (dx then shows the raw type, or nothing, without saying why), so a
renamed field or a moved type silently breaks the WinDbg views. This check
reads the types from the debug information of a host build of the driver
(DWARF, through `readelf --debug-dump=info`): Rust names types and fields
the same way on every host (the MSVC-only spellings are translated, below),
and the debug information says what the compiler built, not what a comment
remembers.

For every `<Type Name="...">` it checks that a type of that name exists
(`*` matches any template argument, as in NatVis), then, for each
instantiation, every expression of the visualizer: DisplayString and Item
names (`{...}`), Item, ExpandedItem, StringView, Size, ValuePointer,
ValueNode, Exec, and the Condition and InitialValue attributes. Every field
path is followed through the types: `a.b->c[2].d`, `*p`, `&x`, casts to a
driver type (`(wfpcallout::...::T*)p`) and the CustomListItems variables
(typed by their InitialValue). What it cannot type (arithmetic, casts to C
types such as `unsigned __int64*`) it does not look into.

MSVC spellings: an enum with data is `enum2$<Path>` with `variantN.value`
(the Nth variant's fields), `variantN.DISCR_EXACT` and `tag`; in DWARF the
same enum is a structure with a variant part, which this check maps onto
those names. `Name<A<B> >` matches `Name<A<B>>`.

Usage: .ci/check-natvis.py [--natvis FILE] [--artifact FILE]

Without --artifact it builds the driver's library for the host
(`cargo build -p wfpcallout --lib`, honouring CARGO_TARGET_DIR) and reads
its rlib. Exit status 0 if every item checks, 1 otherwise (each problem is
printed as FILE:LINE: <Type>: what: why), 2 if it could not run.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import xml.parsers.expat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ---------------------------------------------------------------- DWARF ----


class Die:
    __slots__ = ("tag", "name", "type_ref", "parent", "children", "obj")

    def __init__(self, tag, parent, obj):
        self.tag = tag
        self.name = None
        self.type_ref = None
        self.parent = parent
        self.children = []
        self.obj = obj


NAMED_SCOPES = ("DW_TAG_namespace", "DW_TAG_structure_type", "DW_TAG_union_type", "DW_TAG_enumeration_type")
TYPE_TAGS = ("DW_TAG_structure_type", "DW_TAG_union_type", "DW_TAG_enumeration_type")

DIE_RE = re.compile(r"^\s*<(\d+)><([0-9a-f]+)>: Abbrev Number: (\d+)(?: \((DW_TAG_\w+)\))?")
NAME_RE = re.compile(r"^\s*<[0-9a-f]+>\s+DW_AT_name\s*:\s*(?:\((?:strp|string|line_strp|strx\d?)\)\s*)?"
                     r"(?:\((?:indirect (?:line )?string, )?(?:offset|index): 0x[0-9a-f]+\):\s*)?(.*?)\s*$")
TYPE_RE = re.compile(r"^\s*<[0-9a-f]+>\s+DW_AT_type\s*:.*?<0x([0-9a-f]+)>")


def normalize(name):
    """A type name compared without spaces (`> >` and `>>` are one)."""
    return re.sub(r"\s+", "", name)


class Types:
    """Every type of the artifact's debug information, by qualified name."""

    def __init__(self, readelf_lines):
        self.by_name = {}  # normalized qualified name -> [Die]
        self.offsets = {}  # (object, offset) -> Die
        obj = None
        stack = []
        die = None
        for line in readelf_lines:
            if line.startswith("File: "):
                obj = line[6:].strip()
                stack = []
                die = None
                continue
            m = DIE_RE.match(line)
            if m:
                depth, offset, abbrev, tag = int(m.group(1)), int(m.group(2), 16), m.group(3), m.group(4)
                del stack[depth:]
                if abbrev == "0" or tag is None:
                    die = None
                    continue
                parent = stack[-1] if stack else None
                die = Die(tag, parent, obj)
                if parent is not None:
                    parent.children.append(die)
                self.offsets[(obj, offset)] = die
                stack.append(die)
                continue
            if die is None:
                continue
            m = NAME_RE.match(line)
            if m:
                die.name = m.group(1)
                continue
            m = TYPE_RE.match(line)
            if m:
                die.type_ref = int(m.group(1), 16)
        for die in self.offsets.values():
            if die.tag in TYPE_TAGS and die.name:
                self.by_name.setdefault(normalize(self.qualified(die)), []).append(die)

    def qualified(self, die):
        parts = [die.name]
        scope = die.parent
        while scope is not None:
            if scope.tag in NAMED_SCOPES and scope.name:
                parts.append(scope.name)
            scope = scope.parent
        return "::".join(reversed(parts))

    def target(self, die):
        if die.type_ref is None:
            return None
        return self.offsets.get((die.obj, die.type_ref))

    def best(self, dies):
        """The fullest definition among duplicates (one per codegen unit)."""
        return max(dies, key=lambda d: len(d.children))

    def lookup(self, name):
        dies = self.by_name.get(normalize(name))
        return self.best(dies) if dies else None

    def matching(self, pattern):
        """Type names matching a NatVis Type Name (`*`: any argument)."""
        if "*" not in pattern:
            return [pattern] if normalize(pattern) in self.by_name else []
        regex = re.compile("^" + ".+".join(re.escape(p) for p in normalize(pattern).split("*")) + "$")
        return sorted(name for name in self.by_name if regex.match(name))


# ----------------------------------------------------------- Type views ----


class T:
    """A type as the expressions see it."""

    def __init__(self, kind, die=None, inner=None, name=None):
        self.kind = kind  # struct, variant, ptr, array, scalar, unknown
        self.die = die
        self.inner = inner
        self.name = name

    def __repr__(self):
        return self.name or self.kind


SCALAR = T("scalar", name="a number")
UNKNOWN = T("unknown", name="an untyped value")
C_TYPES = {"void", "char", "short", "int", "long", "unsigned", "signed", "__int64", "__int32", "__int16",
           "__int8", "bool", "wchar_t", "float", "double"}


class CheckError(Exception):
    pass


class Typer:
    def __init__(self, types):
        self.types = types

    def of_die(self, die):
        """The view of the type a DW_AT_type points to."""
        if die is None:
            return UNKNOWN
        if die.tag in ("DW_TAG_structure_type", "DW_TAG_union_type"):
            return T("struct", die=die, name=self.types.qualified(die))
        if die.tag == "DW_TAG_pointer_type":
            target = self.types.target(die)
            return T("ptr", inner=self.of_die(target) if target else T("scalar", name="void"), name=die.name)
        if die.tag == "DW_TAG_array_type":
            return T("array", inner=self.of_die(self.types.target(die)), name="an array")
        if die.tag in ("DW_TAG_typedef", "DW_TAG_const_type", "DW_TAG_volatile_type"):
            return self.of_die(self.types.target(die))
        return T("scalar", name=die.name or die.tag)

    def named(self, name):
        die = self.types.lookup(name)
        if die is None:
            raise CheckError(f"no type `{name}` in the driver's debug information")
        return self.of_die(die)

    def members(self, die):
        return [c for c in die.children if c.tag == "DW_TAG_member" and c.name]

    def variants(self, die):
        """The variant members of a Rust enum, in variant order (None if not an enum)."""
        for child in die.children:
            if child.tag == "DW_TAG_variant_part":
                found = []
                for variant in child.children:
                    if variant.tag == "DW_TAG_variant":
                        found.extend(c for c in variant.children if c.tag == "DW_TAG_member")
                return found
        return None

    def field(self, t, name):
        if t.kind == "ptr":  # the debugger's expression evaluator lets `.` through a pointer
            t = t.inner
        if t.kind == "unknown":
            return UNKNOWN
        if t.kind == "variant":
            if name == "value":
                return self.of_die(self.types.target(t.die))
            if name in ("DISCR_EXACT", "DISCR_BEGIN", "DISCR_END", "NAME"):
                return SCALAR
            raise CheckError(f"`{name}`: an enum variant has `value`, `DISCR_EXACT`, `DISCR_BEGIN`, `DISCR_END`, `NAME`")
        if t.kind != "struct":
            raise CheckError(f"`{name}`: {t} has no fields")
        variants = self.variants(t.die)
        if variants is not None:
            m = re.fullmatch(r"variant(\d+)", name)
            if m:
                index = int(m.group(1))
                if index >= len(variants):
                    raise CheckError(f"`{name}`: {t} has {len(variants)} variants")
                return T("variant", die=variants[index], name=f"{t}::{variants[index].name}")
            if name == "tag":
                return SCALAR
        for member in self.members(t.die):
            if member.name == name:
                return self.of_die(self.types.target(member))
        names = ", ".join(m.name for m in self.members(t.die))
        if variants is not None:
            names = ", ".join(f"variant{i} ({v.name})" for i, v in enumerate(variants)) + ", tag"
        raise CheckError(f"no field `{name}` in {t} (it has: {names or 'no fields'})")

    def deref(self, t, what):
        if t.kind in ("ptr", "array"):
            return t.inner
        if t.kind == "unknown":
            return UNKNOWN
        raise CheckError(f"{what}: {t} is not a pointer or an array")


# ---------------------------------------------------------- Expressions ----

CAST_RE = re.compile(
    r"\(\s*("
    r"(?:(?:unsigned|signed|const)\s+)*(?:__int64|__int32|__int16|__int8|short|char|int|long|void|bool|wchar_t)"
    r"|[A-Za-z_][\w$]*(?:::[A-Za-z_][\w$]*)+(?:<[^()]*>)?"
    r"|enum2\$<[^()]*>"
    r")\s*((?:\*\s*)*)\)"
)
TOKEN_RE = re.compile(
    r"\s*(?:(?P<cast>\x00\d+\x00)|(?P<num>0[xX][0-9a-fA-F]+|\d+)[uUlL]*|(?P<id>[A-Za-z_$][\w$]*)"
    r"|(?P<op>->|\+\+|--|<<|>>|<=|>=|==|!=|&&|\|\||[-+*/%&|^!~<>=?:.,\[\]()]))"
)


class Parser:
    """Types an expression, checking every field it names on the way."""

    def __init__(self, text, typer, this, variables):
        self.typer = typer
        self.this = this
        self.variables = variables
        self.casts = []

        def cast(m):
            self.casts.append((m.group(1), m.group(2).count("*")))
            return f"\x00{len(self.casts) - 1}\x00"

        text = CAST_RE.sub(cast, text)
        self.tokens = []
        pos = 0
        while pos < len(text):
            m = TOKEN_RE.match(text, pos)
            if not m or m.end() == pos:
                if text[pos:].strip() == "":
                    break
                raise CheckError(f"cannot read `{text[pos:]}`")
            pos = m.end()
            kind = m.lastgroup
            self.tokens.append((kind, m.group(kind)))
        self.i = 0

    def peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else (None, None)

    def take(self):
        tok = self.peek()
        self.i += 1
        return tok

    def expect(self, op):
        kind, value = self.take()
        if value != op:
            raise CheckError(f"expected `{op}`, found `{value}`")

    def parse(self):
        t = self.assignment()
        if self.i != len(self.tokens):
            raise CheckError(f"unexpected `{self.peek()[1]}`")
        return t

    BINARY = [["||"], ["&&"], ["|"], ["^"], ["&"], ["==", "!="], ["<", ">", "<=", ">="], ["<<", ">>"],
              ["+", "-"], ["*", "/", "%"]]

    def assignment(self):
        left = self.conditional()
        if self.peek()[1] == "=":
            self.take()
            self.assignment()
        return left

    def conditional(self):
        t = self.binary(0)
        if self.peek()[1] == "?":
            self.take()
            a = self.assignment()
            self.expect(":")
            self.conditional()
            return a
        return t

    def binary(self, level):
        if level == len(self.BINARY):
            return self.unary()
        t = self.binary(level + 1)
        while self.peek()[0] == "op" and self.peek()[1] in self.BINARY[level]:
            self.take()
            self.binary(level + 1)
            t = SCALAR
        return t

    def unary(self):
        kind, value = self.peek()
        if kind == "op" and value in ("*", "&", "-", "+", "!", "~", "++", "--"):
            self.take()
            t = self.unary()
            if value == "*":
                return self.typer.deref(t, "`*`")
            if value == "&":
                return T("ptr", inner=t, name=f"a pointer to {t}")
            return SCALAR if value not in ("++", "--") else t
        if kind == "cast":
            self.take()
            type_name, stars = self.casts[int(value.strip("\x00"))]
            self.unary()
            if "::" in type_name or type_name.startswith("enum2$"):
                if type_name.startswith("enum2$<"):
                    type_name = type_name[len("enum2$<"):-1]
                t = self.typer.named(type_name)
            else:
                t = T("scalar", name=type_name)
            for _ in range(stars):
                t = T("ptr", inner=t, name=f"{t}*")
            return t
        return self.postfix(self.primary())

    def primary(self):
        kind, value = self.take()
        if kind == "num":
            return SCALAR
        if kind == "id":
            if value == "this":
                return T("ptr", inner=self.this, name=f"{self.this}*")
            if value in self.variables:
                return self.variables[value]
            if value.startswith("$"):
                return SCALAR  # $i, $T1 ...
            if value in ("true", "false"):
                return SCALAR
            return self.typer.field(self.this, value)
        if value == "(":
            t = self.assignment()
            self.expect(")")
            return t
        raise CheckError(f"unexpected `{value}`")

    def postfix(self, t):
        while True:
            kind, value = self.peek()
            if value == ".":
                self.take()
                _, name = self.take()
                t = self.typer.field(t, name)
            elif value == "->":
                self.take()
                _, name = self.take()
                t = self.typer.field(self.typer.deref(t, f"`->{name}`"), name)
            elif value == "[":
                self.take()
                self.assignment()
                self.expect("]")
                t = self.typer.deref(t, "`[...]`")
            elif value in ("++", "--"):
                self.take()
            else:
                return t


def split_format(text):
    """`expr,spec` -> (expr, spec); the spec may start with `[expr]`."""
    depth = 0
    for i, ch in enumerate(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            return text[:i], text[i + 1:].strip()
    return text, ""


def braced(text):
    """The `{...}` expressions of a DisplayString or a Name (`{{` and `}}` are literal braces)."""
    out = []
    i = 0
    while i < len(text):
        if text.startswith("{{", i) or text.startswith("}}", i):
            i += 2
            continue
        if text[i] == "{":
            end = text.find("}", i)
            if end < 0:
                raise CheckError(f"unclosed `{{` in `{text}`")
            out.append(text[i + 1:end])
            i = end + 1
            continue
        i += 1
    return out


# -------------------------------------------------------------- NatVis -----


class Node:
    def __init__(self, tag, attrs, line):
        self.tag = tag
        self.attrs = attrs
        self.line = line
        self.text = ""
        self.children = []


def read_natvis(path):
    root = Node("", {}, 0)
    stack = [root]
    parser = xml.parsers.expat.ParserCreate()

    def start(tag, attrs):
        node = Node(tag.split("}")[-1], attrs, parser.CurrentLineNumber)
        stack[-1].children.append(node)
        stack.append(node)

    def end(_tag):
        stack.pop()

    def data(text):
        stack[-1].text += text

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = data
    with open(path, "rb") as f:
        parser.ParseFile(f)
    return root


WHOLE_EXPRESSION = {"Item", "ExpandedItem", "Size", "ValuePointer", "ValueNode", "Exec", "StringView"}
BRACED_TEXT = {"DisplayString"}
EXPRESSION_ATTRS = ("Condition", "InitialValue")


def check_type(node, type_name, typer, natvis, problems):
    this = typer.named(type_name)
    label = f"<Type Name=\"{node.attrs['Name']}\">" + (f" as {type_name}" if type_name != node.attrs["Name"] else "")

    def check(expr, where, line, variables):
        try:
            Parser(expr, typer, this, variables).parse()
        except CheckError as e:
            problems.append(f"{natvis}:{line}: {label}: {where} `{expr.strip()}`: {e}")
            return UNKNOWN
        return None

    def walk(n, variables):
        variables = dict(variables)
        for child in n.children:
            what = child.tag + (f" \"{child.attrs['Name']}\"" if "Name" in child.attrs else "")
            for attr in EXPRESSION_ATTRS:
                if attr in child.attrs and not (child.tag == "Variable" and attr == "InitialValue"):
                    check(child.attrs[attr], f"{what} {attr}", child.line, variables)
            if "Name" in child.attrs and child.tag in ("Item", "Synthetic"):
                for expr in braced(child.attrs["Name"]):
                    check(split_format(expr)[0], f"{what} name", child.line, variables)
            if child.tag == "Variable":
                try:
                    variables[child.attrs["Name"]] = Parser(child.attrs["InitialValue"], typer, this, variables).parse()
                except CheckError as e:
                    problems.append(f"{natvis}:{child.line}: {label}: {what} InitialValue "
                                    f"`{child.attrs['InitialValue']}`: {e}")
                    variables[child.attrs["Name"]] = UNKNOWN
                continue
            text = child.text.strip()
            exprs = []
            if child.tag in WHOLE_EXPRESSION and text:
                exprs = [text]
            elif child.tag in BRACED_TEXT:
                try:
                    exprs = braced(text)
                except CheckError as e:
                    problems.append(f"{natvis}:{child.line}: {label}: {what}: {e}")
            for expr in exprs:
                value, spec = split_format(expr)
                check(value, what, child.line, variables)
                m = re.match(r"\[(.*?)\]", spec)
                if m:
                    check(m.group(1), f"{what} format length", child.line, variables)
            walk(child, variables)

    walk(node, {})
    return label


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--natvis", default=os.path.join(ROOT, "driver", "wfpcallout.natvis"))
    ap.add_argument("--artifact", help="an object, archive (rlib) or binary with the driver's DWARF")
    args = ap.parse_args()

    artifact = args.artifact
    if artifact is None:
        cargo = os.environ.get("CARGO", "cargo")
        build = subprocess.run(
            [cargo, "build", "-p", "wfpcallout", "--lib", "--message-format=json-render-diagnostics"],
            cwd=ROOT, stdout=subprocess.PIPE, text=True)
        if build.returncode != 0:
            print("check-natvis: the driver's host build failed", file=sys.stderr)
            return 2
        for line in build.stdout.splitlines():
            msg = json.loads(line)
            if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "wfpcallout":
                artifact = next((f for f in msg["filenames"] if f.endswith(".rlib")), artifact)
        if artifact is None:
            print("check-natvis: cargo built no rlib for the driver", file=sys.stderr)
            return 2
    readelf = os.environ.get("READELF", "readelf")
    try:
        dump = subprocess.run([readelf, "--debug-dump=info", "--wide", artifact], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, errors="replace")
    except FileNotFoundError:
        print(f"check-natvis: {readelf} not found (apt-get install binutils)", file=sys.stderr)
        return 2
    types = Types(dump.stdout.splitlines())
    if not types.by_name:
        print(f"check-natvis: no debug information in {artifact}", file=sys.stderr)
        return 2
    typer = Typer(types)
    natvis = os.path.relpath(args.natvis, os.getcwd())

    problems = []
    checked = 0
    for node in read_natvis(args.natvis).children[0].children:
        if node.tag != "Type":
            continue
        pattern = node.attrs["Name"]
        wanted = pattern[len("enum2$<"):-1] if pattern.startswith("enum2$<") else pattern
        names = types.matching(wanted)
        if not names:
            problems.append(f"{natvis}:{node.line}: <Type Name=\"{pattern}\">: no such type in the driver's "
                            "debug information")
            continue
        for name in names:
            check_type(node, name, typer, natvis, problems)
            checked += 1
    for problem in problems:
        print(problem)
    print(f"check-natvis: {checked} type instantiations checked, {len(problems)} problem(s)"
          + ("" if problems else ": every type and field the NatVis file names exists"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
