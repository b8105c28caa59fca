#!/usr/bin/env python3
"""Read `wirescope probe --json` on stdin; print one line "cmd=method ..." for the
kernel-matrix report. Accepts JSON Lines or one document, and finds the per-command
choice wherever it is: a "commands" object ({"conn": "fentry"} or
{"conn": {"method": "fentry", ...}}) or objects that carry "command" and "method"
(or "attach"). Exits 1, printing nothing, when it finds no such choice."""
import json
import sys

METHOD_KEYS = ("method", "attach", "uses", "chosen")


def method_of(value):
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for key in METHOD_KEYS:
            if isinstance(value.get(key), str):
                return value[key]
    return None


def walk(node, found):
    if isinstance(node, dict):
        commands = node.get("commands")
        if isinstance(commands, dict):
            for name, value in commands.items():
                method = method_of(value)
                if method:
                    found.setdefault(name, method)
        name = node.get("command")
        if isinstance(name, str):
            method = method_of(node)
            if method:
                found.setdefault(name, method)
        for value in node.values():
            walk(value, found)
    elif isinstance(node, list):
        for value in node:
            walk(value, found)


def main():
    text = sys.stdin.read()
    docs = []
    try:
        docs.append(json.loads(text))
    except ValueError:
        for line in text.splitlines():
            line = line.strip()
            if line:
                docs.append(json.loads(line))
    found = {}
    walk(docs, found)
    if not found:
        return 1
    print(" ".join(f"{name}={method}" for name, method in sorted(found.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
