#!/usr/bin/env python3
"""Run a command and report its peak anonymous memory (RssAnon) and wall time.

RssAnon is what the process itself allocated: unlike VmHWM it leaves out the
pages of files it maps (a checkpoint read by mmap), which the kernel can drop.
Linux keeps no peak of RssAnon, so /proc/PID/status is read every --interval
seconds; allocations that live shorter than that can be missed.

Usage: peak_memory.py [--interval 0.01] [--json FILE] -- COMMAND [ARG ...]
Prints "peak_rss_anon_mib ... vm_hwm_mib ... seconds ... exit ..." and, with
--json, writes the same figures as JSON. Exits with the command's status.
"""
import argparse
import json
import subprocess
import sys
import time


def status_kib(pid, fields):
    values = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in fields:
                    values[key] = int(rest.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return values


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--interval", type=float, default=0.01)
    ap.add_argument("--json")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        sys.exit("peak_memory.py: no command")
    start = time.monotonic()
    proc = subprocess.Popen(command)
    peak_anon = peak_hwm = 0
    while proc.poll() is None:
        v = status_kib(proc.pid, ("RssAnon", "VmHWM"))
        peak_anon = max(peak_anon, v.get("RssAnon", 0))
        peak_hwm = max(peak_hwm, v.get("VmHWM", 0))
        time.sleep(args.interval)
    result = {
        "peak_rss_anon_mib": round(peak_anon / 1024, 1),
        "vm_hwm_mib": round(peak_hwm / 1024, 1),
        "seconds": round(time.monotonic() - start, 2),
        "exit": proc.returncode,
    }
    print(" ".join(f"{k} {v}" for k, v in result.items()), file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f)
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
