#!/usr/bin/python3
"""
gen-man.py - relevo(8) and relevo.yaml(5) from the README's tables.

    scripts/gen-man.py README.md OUTDIR VERSION

writes OUTDIR/relevo.8 and OUTDIR/relevo.yaml.5. The README stays the one place
where commands and configuration keys are described: relevo(8) lists every row
of the "Command line" table, relevo.yaml(5) every row of every `| key | meaning |
default |` table (the main configuration table, the HTTP API's, and any other
section's) plus the configuration rules and the complete example. A key that is
documented twice (a summary row naming several keys, then a row per key) appears
once, from its own row.

The output is plain man(7) roff, checked in the test suite with
`groff -man -ww -z` and `man --warnings -l` (tests/e2e/test_packaging.py).
"""

import datetime
import os
import re
import sys

SECTION_RE = re.compile(r"^(#{2,3}) (.*)$")


def sections(lines):
    """{title: [lines]} for every ## and ### heading (a ## section includes its ###)."""
    out, open_ = {}, []
    for line in lines:
        m = SECTION_RE.match(line)
        if m:
            level = len(m.group(1))
            open_ = [(lv, t) for lv, t in open_ if lv < level] + [(level, m.group(2))]
            out.setdefault(m.group(2), [])
            for lv, t in open_[:-1]:
                out[t].append(line)
            continue
        for _, t in open_:
            out[t].append(line)
    return out


def split_row(line):
    """The cells of a Markdown table row (`\\|` is a literal bar)."""
    cells, cur, i, s = [], "", 0, line.strip()[1:-1]
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s) and s[i + 1] == "|":
            cur += "|"
            i += 2
            continue
        if s[i] == "|":
            cells.append(cur.strip())
            cur = ""
        else:
            cur += s[i]
        i += 1
    cells.append(cur.strip())
    return cells


def tables(lines):
    """Every table in lines as (header cells, [row cells])."""
    out, cur = [], None
    for line in lines:
        if line.startswith("|"):
            cells = split_row(line)
            if cur is None:
                cur = (cells, [])
                out.append(cur)
            elif not all(re.fullmatch(r":?-+:?", c) for c in cells):
                cur[1].append(cells)
        else:
            cur = None
    return out


def roff_text(s):
    """Inline Markdown to roff: `code` and **bold** in bold, links to their text."""
    def esc(t):
        t = t.replace("\\", "\\e")
        return "".join(c if ord(c) < 128 else "\\[u%04X]" % ord(c) for c in t)

    def code(t):
        return "\\fB" + esc(t).replace("-", "\\-") + "\\fR"

    out, pos = [], 0
    for m in re.finditer(r"`([^`]+)`|\*\*([^*]+)\*\*|\[([^\]]+)\]\([^)]*\)", s):
        out.append(esc(s[pos:m.start()]))
        if m.group(1) is not None:
            out.append(code(m.group(1)))
        elif m.group(2) is not None:
            out.append("\\fB" + esc(m.group(2)) + "\\fR")
        else:
            out.append(esc(m.group(3)))
        pos = m.end()
    out.append(esc(s[pos:]))
    text = "".join(out)
    return "\\&" + text if text[:1] in (".", "'") else text


def paragraphs(lines):
    """Markdown paragraphs and bullet items as roff (.PP / .IP), code blocks as .EX."""
    out, para, in_code = [], [], False

    def flush():
        if para:
            out.append(roff_text(" ".join(para)))
            para.clear()
    for line in lines:
        if line.startswith("```"):
            flush()
            out.append(".EE" if in_code else ".EX")
            in_code = not in_code
            continue
        if in_code:
            out.append(roff_text(line) if line.strip() else "")
            continue
        if line.startswith("|") or line.startswith("#"):
            flush()
            continue
        if not line.strip():
            flush()
            continue
        if line.startswith("- "):
            flush()
            out.append(".IP \\(bu 2")
            para.append(line[2:].strip())
        elif not para and not line.startswith("  "):
            out.append(".PP")
            para.append(line.strip())
        else:
            para.append(line.strip())
    flush()
    return out


def header(name, section, version, title):
    date = datetime.datetime.fromtimestamp(
        int(os.environ.get("SOURCE_DATE_EPOCH", "0")) or os.path.getmtime(sys.argv[1]),
        datetime.timezone.utc).strftime("%Y-%m-%d")
    return ['.\\" Generated from README.md by scripts/gen-man.py: do not edit.',
            '.TH "%s" "%s" "%s" "relevo %s" "%s"' % (name.upper(), section, date, version, title)]


def command_rows(secs):
    for head, rows in tables(secs["Command line"]):
        if [h.lower() for h in head[:2]] == ["command", "what it does"]:
            return rows
    raise SystemExit("gen-man: README has no command table under 'Command line'")


def key_rows(lines):
    """Every (key cell, meaning, default) of every key table, most specific rows only."""
    rows = []
    for head, body in tables(lines):
        if [h.lower() for h in head] == ["key", "meaning", "default"]:
            rows.extend(body)
    single = {re.sub(r"`", "", r[0]) for r in rows}
    out, seen = [], set()
    for r in rows:
        keys = re.findall(r"`([^`]+)`", r[0])
        if len(keys) > 1 and all(k in single for k in keys):
            continue
        if r[0] in seen:
            continue
        seen.add(r[0])
        out.append(r)
    return out


def man_relevo(secs, version):
    out = header("relevo", "8", version, "System Administration")
    out += [".SH NAME", "relevo \\- self\\-hosted SMTP relay with DKIM, queue and HTTP API",
            ".SH SYNOPSIS", ".B relevo", ".I command", ".RI [ args ]",
            ".RB [ \\-c", ".IR file ]", ".br", ".B relevo \\-\\-version", ".br",
            ".B relevo \\-\\-help",
            ".SH DESCRIPTION"]
    out += [roff_text(
        "relevo accepts mail from authenticated clients (SMTP AUTH over TLS on ports 587 "
        "and 465) and applications (an HTTP API), queues it durably, signs it with DKIM "
        "for the sender's domain and delivers it to each recipient domain's mail servers, "
        "with retries and RFC 3464 bounces. The daemon is `relevo serve`; every other "
        "command administers it, and works whether or not the daemon runs.")]
    out += [".SH COMMANDS"]
    for cmd, what in command_rows(secs):
        out += [".TP", roff_text(cmd), roff_text(what)]
    cli = secs["Command line"]
    for line in cli:
        if line.startswith("Every subcommand takes"):
            out += [".SH OPTIONS", ".TP", "\\fB\\-c\\fR \\fIfile\\fR, \\fB\\-\\-config\\fR \\fIfile\\fR",
                    "The configuration file (default \\fI/etc/relevo/relevo.yaml\\fR).",
                    ".TP", "\\fB\\-\\-help\\fR", "Usage of relevo or of one command, on standard output.",
                    ".TP", "\\fB\\-\\-version\\fR", "The version, as \\fBrelevo %s\\fR." % version]
            break
    rest = [l for l in cli if not l.startswith("Every subcommand takes")]
    out += [".SH NOTES"] + paragraphs(rest)
    out += [".SH SIGNALS", ".TP", ".B SIGTERM, SIGINT",
            "Stop gracefully: listeners close, sessions in progress get 421 4.3.2, every "
            "acknowledged message is already on disk.",
            ".TP", ".B SIGHUP",
            "Re\\-read the configuration (as \\fBsystemctl reload relevo\\fR does).",
            ".SH FILES", ".TP", ".I /etc/relevo/relevo.yaml",
            "The configuration, see \\fBrelevo.yaml\\fR(5).",
            ".TP", ".I /var/lib/relevo",
            "The default \\fIdata_dir\\fR: spool, store (\\fIrelevo.db\\fR), DKIM keys, "
            "control socket.",
            ".TP", ".I relevo.service",
            "The systemd unit: runs \\fBrelevo serve\\fR as the \\fIrelevo\\fR user.",
            ".SH EXIT STATUS",
            "0 on success, 1 when a command fails (the reason is on standard error), 2 on a "
            "usage error.",
            ".SH SEE ALSO", "\\fBrelevo.yaml\\fR(5), \\fBsystemctl\\fR(1)"]
    return "\n".join(out) + "\n"


def man_config(secs, lines, version):
    conf = secs["Configuration"]
    out = header("relevo.yaml", "5", version, "File Formats")
    out += [".SH NAME", "relevo.yaml \\- configuration file of the relevo SMTP relay",
            ".SH SYNOPSIS", ".I /etc/relevo/relevo.yaml", ".SH DESCRIPTION"]
    cut = next((i for i, l in enumerate(conf) if l.startswith("|")), len(conf))
    out += paragraphs(conf[:cut])
    out += [".SH KEYS"]
    for key, meaning, default in key_rows(lines):
        out += [".TP", roff_text(key), roff_text(meaning), ".br", "Default: " + roff_text(default)]
    example = []
    for i, l in enumerate(conf):
        if l.startswith("A complete example"):
            example = conf[i + 1:]
            break
    fences = [i for i, l in enumerate(example) if l.startswith("```")][:2]
    if len(fences) == 2:
        out += [".SH EXAMPLE"] + paragraphs(example[fences[0]:fences[1] + 1])
    out += [".SH FILES", ".TP", ".I /etc/relevo/relevo.yaml.example",
            "Every key with its default and a line of explanation.",
            ".SH SEE ALSO", "\\fBrelevo\\fR(8)"]
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) != 4:
        raise SystemExit("usage: gen-man.py README.md OUTDIR VERSION")
    with open(sys.argv[1], encoding="utf-8") as f:
        lines = f.read().splitlines()
    secs = sections(lines)
    os.makedirs(sys.argv[2], exist_ok=True)
    for name, text in (("relevo.8", man_relevo(secs, sys.argv[3])),
                       ("relevo.yaml.5", man_config(secs, lines, sys.argv[3]))):
        with open(os.path.join(sys.argv[2], name), "w", encoding="ascii") as f:
            f.write(text)


if __name__ == "__main__":
    main()
