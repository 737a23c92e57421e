#!/usr/bin/env python3
"""Lays out the server's code by use: which functions a run of the panel really executes.

A running program keeps resident every page of its code it has touched, and the kernel maps
the cached pages around each touch with it (fault-around, 64 KiB). Code the panel runs that is
spread thinly across the 24 MB of `.text` therefore costs far more memory than its size. This
tool writes a symbol ordering file for the linker (rust-lld `--symbol-ordering-file`), which
puts the listed functions first, together; everything else follows in its usual order.

Three subcommands, used by scripts/pgo.sh:

  watch --bin BIN --out PAGES [--first-out FIRST]
      Until SIGTERM/SIGINT, records which pages of BIN's code are mapped in any running
      process of BIN (read from /proc/PID/pagemap, every 0.2 s) and writes their file page
      numbers to PAGES. On SIGUSR1 it also writes the pages recorded so far to FIRST: the first
      phase of the training load (pgo.sh: the panel no one browses). For the pages to be those
      touched, and not their neighbours, BIN must live on a file system whose read-ahead is
      off, and start with none of it cached (pgo.sh runs it from a loop-mounted image with
      read_ahead_kb 0): fault-around then only finds pages some process really touched.

  counts --profdata PROFDATA --llvm-profdata TOOL
      Prints "COUNT NAME" for every function the profile has a record of, 0 for those that
      never ran (pgo.sh keeps the first phase's as pgo/pier.first.xz).

  order --bin BIN --pages PAGES --first FIRST --first-counts COUNTS --profdata PROFDATA
        --llvm-profdata TOOL --out ORDER
      Writes ORDER: first the code a panel runs when no one browses it (start-up, the
      reconciler, the sampler, the API, HAProxy's configuration): the functions COUNTS counted,
      hottest first, then the functions on a page of FIRST that COUNTS has no record of (the
      standard library, SQLite's and jemalloc's C), and every function on a page of FIRST with
      none of the counted ones on it (code the profile counted under another name); then the
      other functions the profile counted (hottest first); then every other function on a
      touched page (code the profile does not see, and paths the instrumented run did not take).
      Why the first phase goes first: the kernel reads a binary in with read-ahead, in large
      folios, and maps a whole folio when any page of it is touched. Code a panel runs all the
      time, spread among the pages' rendering code, kept about twice its size resident
      (bench/apps.py: 13 of the 18 MiB of counted code resident right after start, 6.5 MiB
      with read-ahead off).
"""
import argparse
import bisect
import lzma
import os
import re
import signal
import struct
import subprocess
import sys
import time

PAGE = 4096


def text_segment(binary):
    """(file offset, virtual address, size) of the executable LOAD segment."""
    out = subprocess.run(["readelf", "-lW", binary], check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == "LOAD" and "E" in f[6:-1]:
            return int(f[1], 16), int(f[2], 16), int(f[5], 16)
    sys.exit(f"pgo-order: no executable segment in {binary}")


def functions(binary):
    """[(address, size, name)] of the binary's code symbols, by address."""
    out = subprocess.run(["nm", "-S", "--defined-only", binary], check=True, capture_output=True,
                         text=True).stdout
    syms = []
    for line in out.splitlines():
        f = line.split()
        if len(f) == 4 and f[2] in "tTwW" and int(f[1], 16) > 0:
            syms.append((int(f[0], 16), int(f[1], 16), f[3]))
    syms.sort()
    return syms


def watch(args):
    binary = os.path.realpath(args.bin)
    pages = set()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    marks = []
    signal.signal(signal.SIGUSR1, lambda *_: marks.append(1))
    while not stop:
        if marks:
            if not args.first_out:
                sys.exit("pgo-order: SIGUSR1 without --first-out")
            marks.clear()
            write_pages(args.first_out, pages, "in the first phase")
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if os.readlink(f"/proc/{pid}/exe") != binary:
                    continue
                with open(f"/proc/{pid}/maps") as maps:
                    spans = [line.split() for line in maps]
                with open(f"/proc/{pid}/pagemap", "rb") as pagemap:
                    for f in spans:
                        if len(f) < 6 or f[1] != "r-xp" or f[5] != binary:
                            continue
                        lo, hi = (int(x, 16) for x in f[0].split("-"))
                        first = int(f[2], 16) // PAGE
                        pagemap.seek(lo // PAGE * 8)
                        data = pagemap.read((hi - lo) // PAGE * 8)
                        for i in range(len(data) // 8):
                            if struct.unpack_from("<Q", data, i * 8)[0] >> 63:
                                pages.add(first + i)
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue  # the process ended meanwhile
        time.sleep(0.2)
    write_pages(args.out, pages, "in all")


def write_pages(path, pages, what):
    with open(path, "w") as out:
        out.write("".join(f"{p}\n" for p in sorted(pages)))
    print(f"pgo-order: {len(pages)} pages ({len(pages) * PAGE / 2**20:.1f} MiB) of code touched"
          f" {what}", file=sys.stderr)


def read_pages(path):
    with open(path) as f:
        return sorted(int(line) for line in f if line.strip())


def profile_counts(tool, profdata):
    """{symbol: max count} for every function the profile has a record of."""
    out = subprocess.run([tool, "show", "--all-functions", "--counts", profdata], check=True,
                         capture_output=True, text=True).stdout
    counts, name = {}, None
    for line in out.splitlines():
        if line.startswith("  ") and not line.startswith("    ") and line.endswith(":"):
            # Local functions are recorded as "<file or unit>;<symbol>".
            name = line.strip()[:-1].rsplit(";", 1)[-1]
            counts.setdefault(name, 0)
        elif name and line.startswith("    Block counts: ["):
            values = [int(v) for v in re.findall(r"\d+", line)]
            counts[name] = max(counts[name], max(values, default=0))
        elif name and line.startswith("    Function count: "):
            counts[name] = max(counts[name], int(line.split(":")[1]))
    return counts


def order(args):
    counts = profile_counts(args.llvm_profdata, args.profdata)
    seg_off, seg_vaddr, seg_size = text_segment(args.bin)
    syms = functions(args.bin)
    size = {n: s for _, s, n in syms}
    starts = [a for a, _, _ in syms]

    def by_page(pages):
        """The functions on each page, in page order."""
        for page in pages:
            lo = page * PAGE - seg_off + seg_vaddr
            if not seg_vaddr <= lo < seg_vaddr + seg_size:
                continue
            i = max(bisect.bisect_right(starts, lo) - 1, 0)
            names = []
            while i < len(syms) and syms[i][0] < lo + PAGE:
                if syms[i][0] + syms[i][1] > lo:
                    names.append(syms[i][2])
                i += 1
            yield names

    def each_once(lists):
        seen, names = set(), []
        for n in (n for names in lists for n in names):
            if n not in seen:
                seen.add(n)
                names.append(n)
        return names

    # The first phase's functions: exact for the code the profile sees (a page also holds
    # neighbours the phase never ran, and the code laid out now mixes both phases); by page for
    # the rest, which no profile counts.
    with open_text(args.first_counts) as f:
        first_counts = {n: int(c) for c, n in (line.split() for line in f if line.strip())}
    first = sorted((n for n, c in first_counts.items() if c > 0 and n in size),
                   key=lambda n: (-first_counts[n], n))
    counted_first = set(first)

    def uncounted(names):
        """What else of a page the phase touched goes first. With one of its counted functions
        on it, the functions COUNTS has no record of (none of those is listed above). With none,
        the page ran code the profile knows under another name (another instance of a generic,
        a part LLVM split off): all of it. Read from a binary laid out by phase, these are the
        few pages past the first group the phase touched."""
        if any(n in counted_first for n in names):
            return [n for n in names if n not in first_counts]
        return names

    first += each_once(map(uncounted, by_page(read_pages(args.first))))
    listed = set(first)
    counted = sorted((n for n, c in counts.items() if c > 0 and n in size and n not in listed),
                     key=lambda n: (-counts[n], n))
    listed.update(counted)
    # Every function on a touched page: which of them ran is not known, and the profile's zeros
    # do not tell (a path the profiled run never took may be the one this run did; leaving it
    # out costs a 64 KiB window of its own later, listing a neighbour too only its size).
    touched = [n for n in each_once(by_page(read_pages(args.pages))) if n not in listed]
    with open(args.out, "w") as out:
        out.write("".join(f"{n}\n" for n in first + counted + touched))
    mib = lambda names: sum(size[n] for n in names) / 2**20  # noqa: E731
    print(f"pgo-order: {len(first)} functions of the first phase ({mib(first):.1f} MiB), then "
          f"{len(counted)} more counted ({mib(counted):.1f} MiB), then {len(touched)} more on "
          f"touched pages ({mib(touched):.1f} MiB), of {sum(size.values()) / 2**20:.1f} MiB of "
          "code", file=sys.stderr)


def open_text(path):
    return lzma.open(path, "rt") if path.endswith(".xz") else open(path)


def print_counts(args):
    counts = profile_counts(args.llvm_profdata, args.profdata)
    for n, c in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        print(c, n)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("watch")
    w.add_argument("--bin", required=True)
    w.add_argument("--out", required=True)
    w.add_argument("--first-out")
    c = sub.add_parser("counts")
    for a in ("--profdata", "--llvm-profdata"):
        c.add_argument(a, required=True)
    o = sub.add_parser("order")
    for a in ("--bin", "--pages", "--first", "--first-counts", "--profdata", "--llvm-profdata",
              "--out"):
        o.add_argument(a, required=True)
    args = ap.parse_args()
    {"watch": watch, "counts": print_counts, "order": order}[args.cmd](args)


if __name__ == "__main__":
    main()
