"""Judge ``pyright --verifytypes triostream --ignoreexternal --outputjson``.

Reads pyright's JSON report from a file (or stdin with ``-``), prints
pyright's diagnostics per symbol (what to fix; only when failing), the symbol counts and the type
completeness score (pyright's own figure: the share of exported symbols whose
type is fully known), and exits 1 when the score is below ``--min`` (a
percentage; 100 is the strict setting).

It also fails when pyright analysed nothing (the package was not found: run
it with the virtual environment's ``python`` first on PATH, from a directory
outside the checkout) or reported errors of its own.

Usage: python .ci/pyright_score.py --min 57.5 pyright.json
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--min", type=float, required=True, metavar="PERCENT", help="lowest passing score")
    parser.add_argument("report", help="pyright's --outputjson report, or - for stdin")
    args = parser.parse_args()
    with sys.stdin if args.report == "-" else open(args.report) as f:
        text = f.read()
    try:
        report: dict[str, Any] = json.loads(text)
    except ValueError:
        print(f"pyright wrote no JSON report (did it run? is node.js available?): {text[:500]!r}")
        return 1

    completeness = report["typeCompleteness"]
    problems = report.get("generalDiagnostics", [])
    if report["summary"]["filesAnalyzed"] == 0 or problems:
        for diagnostic in problems:
            print(f"pyright: {diagnostic.get('severity')}: {diagnostic.get('message')}")
        print(f"pyright could not analyse {completeness.get('packageName')!r} (is it installed in this venv?)")
        return 1

    score = round(100 * completeness["completenessScore"], 2)  # 0.575 * 100 is 57.49999...
    passed = score >= args.min
    flagged = [s for s in completeness["symbols"] if s["diagnostics"]]
    if passed:
        count = sum(len(s["diagnostics"]) for s in flagged)
        print(f"{count} diagnostics on {len(flagged)} symbols (shown only when the score fails)")
    else:
        for symbol in flagged:
            for diagnostic in symbol["diagnostics"]:
                message = diagnostic["message"].replace("\n", "\n      ")
                print(f"  {symbol['name']}: {diagnostic['severity']}:\n      {message}")
    exported = completeness["exportedSymbolCounts"]
    print(
        f"pyright {report.get('version', '?')}: exported symbols: {exported['withKnownType']} known,"
        f" {exported['withAmbiguousType']} ambiguous, {exported['withUnknownType']} unknown"
    )
    verdict = "ok" if passed else "FAIL"
    print(f"Type completeness score: {score:.1f}% (CI minimum: {args.min:g}%: {verdict})")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
