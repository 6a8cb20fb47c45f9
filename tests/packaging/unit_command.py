#!/usr/bin/python3
"""Turns an installed systemd service unit into the command systemd would run.

usage: unit_command.py ROOT UNIT_FILE [INSTANCE]
       unit_command.py --type UNIT_FILE

Prints, as shell words (for `eval "cmd=($(...))"`), `env NAME=VALUE...`
followed by the ExecStart argv, so that the packaging test starts each
program exactly as the installed unit says instead of repeating the unit's
command line. ROOT is the root the unit is installed in (EnvironmentFile=
paths are read inside it). INSTANCE is the %i of a template unit.

Only the unit syntax our units use is accepted; anything else (a second
ExecStart, an ExecStart prefix such as '-' or '+', a specifier other than
%i %I %n %%, an unescaped $VARIABLE, a Type other than simple or notify)
fails with exit status 2, so the test never runs a guess of what systemd
would do. With --type it prints the unit's Type= (simple or notify) only.
Rules followed (systemd.service(5), systemd.unit(5),
systemd.exec(5)): a trailing backslash continues a line; ExecStart= is split
into words with shell-like quoting; in each word %-specifiers are replaced and
"$$" becomes "$"; EnvironmentFile= (a leading '-' makes it optional) holds
NAME=VALUE lines, '#' and ';' lines are comments; Environment= holds
space-separated NAME=VALUE words.
"""
import re
import shlex
import sys


def fail(message):
    print(f"unit_command.py: {message}", file=sys.stderr)
    sys.exit(2)


def read_service_section(path):
    """The [Service] section as a list of (key, value), continuations joined."""
    entries, section, pending = [], None, ""
    with open(path, encoding="utf-8") as unit:
        for raw in unit:
            line = pending + raw.rstrip("\n")
            pending = ""
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            stripped = line.strip()
            if not stripped or stripped[0] in "#;":
                continue
            if stripped.startswith("["):
                section = stripped
                continue
            if section == "[Service]":
                key, _, value = stripped.partition("=")
                entries.append((key.strip(), value.strip()))
    return entries


def expand_word(word, unit_name, instance):
    specifiers = {"i": instance, "I": instance, "n": unit_name, "%": "%"}

    def specifier(match):
        letter = match.group(1)
        if letter not in specifiers or specifiers[letter] is None:
            fail(f"unsupported specifier %{letter} in {word!r}")
        return specifiers[letter]

    word = re.sub(r"%(.)", specifier, word)
    if re.search(r"\$(?!\$)", word.replace("$$", "")):
        fail(f"unescaped $ (variable expansion) is not supported: {word!r}")
    return word.replace("$$", "$")


def environment_files(root, entries, unit_name, instance):
    env = []
    for key, value in entries:
        if key == "Environment":
            env += [expand_word(w, unit_name, instance) for w in shlex.split(value)]
        elif key == "EnvironmentFile":
            optional = value.startswith("-")
            path = expand_word(value.lstrip("-"), unit_name, instance)
            try:
                with open(root + path, encoding="utf-8") as env_file:
                    for line in env_file:
                        line = line.strip()
                        if line and line[0] not in "#;":
                            if "=" not in line:
                                fail(f"{path}: not NAME=VALUE: {line!r}")
                            env.append(line)
            except FileNotFoundError:
                if not optional:
                    fail(f"EnvironmentFile {path} is missing (in {root})")
    return env


def service_type(entries):
    value = dict(entries).get("Type", "simple")
    if value not in ("simple", "notify"):
        fail(f"Type={value} is not supported")
    return value


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--type":
        print(service_type(read_service_section(sys.argv[2])))
        return
    if len(sys.argv) not in (3, 4):
        fail("usage: unit_command.py ROOT UNIT_FILE [INSTANCE]")
    root, path = sys.argv[1], sys.argv[2]
    instance = sys.argv[3] if len(sys.argv) == 4 else None
    base = path.rsplit("/", 1)[-1]
    unit_name = base.replace("@.", f"@{instance}.") if instance is not None else base
    entries = read_service_section(path)
    service_type(entries)
    exec_lines = [value for key, value in entries if key == "ExecStart"]
    if len(exec_lines) != 1:
        fail(f"expected one ExecStart=, found {len(exec_lines)}")
    if exec_lines[0][:1] in "@-:+!":
        fail(f"ExecStart prefixes are not supported: {exec_lines[0]!r}")
    argv = [expand_word(w, unit_name, instance) for w in shlex.split(exec_lines[0])]
    env = environment_files(root, entries, unit_name, instance)
    print(" ".join(shlex.quote(w) for w in ["env", *env, *argv]))


if __name__ == "__main__":
    main()
