"""kscale-lab: the labs on the command line.

    kscale-lab list                         labs, their switches and settings
    kscale-lab params LAB [--format json]   every parameter: unit, default, range, source
    kscale-lab run LAB [--nodes N] [--set NAME=VALUE ...] [--switch NAME=SETTING ...]
                       [--seed S] [--format table|csv|json]
    kscale-lab claims [--lab LAB] [--format table|csv|json] [--no-bands]
    kscale-lab sweep LAB --grid NAME=V1,V2,... [--grid ...] [--set NAME=VALUE ...]
                       [--switch NAME=SETTING ...] [--seeds N] [--workers N]
                       [--out FILE.csv|FILE.parquet] [--scheduler tcp://HOST:PORT]
    kscale-lab report [LAB ...] [--set NAME=VALUE ...] [--switch NAME=SETTING ...]
                       [--out report.html]

Bad input (an unknown lab or parameter, a value out of range, a scenario that
would not fit in memory) prints one line naming the parameter and the allowed
range, and exits with status 2.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys

from .errors import KscaleError, ParameterError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints usage + error otherwise)
        raise ParameterError("arguments", f"are invalid: {message} (see kscale-lab --help)")


def _kv(items, what):
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ParameterError(what, f"must be NAME=VALUE; got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _jsonable(x):
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return None
    if hasattr(x, "item"):
        return _jsonable(x.item())
    return x


def cmd_list(args) -> int:
    from .labs.base import registry
    from .scenario import SWITCH_SPECS

    labs = registry()
    by_switch = {lab.switch: lab for lab in labs.values() if lab.switch}
    print(f"{'switch':<15} {'lab':<15} settings")
    for spec in SWITCH_SPECS:
        lab = by_switch.get(spec.name)
        print(f"{spec.name:<15} {(lab.name if lab else '(not yet)'):<15} {', '.join(spec.settings)}"
              f"   -- {spec.title} (article section {spec.article_section})")
    for lab in labs.values():
        if not lab.switch:
            print(f"{'(all nine)':<15} {lab.name:<15} {', '.join(lab.settings)}   -- {lab.title}")
    return 0


def cmd_params(args) -> int:
    from .labs.base import get_lab

    lab = get_lab(args.lab)
    rows = [p.as_row() for p in lab.params]
    for r in rows:
        per = {s: lab.setting_defaults[s][r["name"]] for s in lab.setting_defaults if r["name"] in lab.setting_defaults[s]}
        if per:
            r["setting_defaults"] = per
    if args.format == "json":
        print(json.dumps({"lab": lab.name, "params": rows}, indent=2, default=str))
        return 0
    if args.format == "csv":
        w = csv.DictWriter(sys.stdout, fieldnames=["name", "default", "unit", "range", "flag", "source", "doc"],
                           extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        return 0
    for r in rows:
        extra = f" (upstream setting: {r['setting_defaults']})" if "setting_defaults" in r else ""
        flag = f" [{r['flag']}]" if r["flag"] else ""
        print(f"{r['name']}{flag} = {r['default']} {r['unit']}{extra}")
        print(f"    {r['doc']}; range {r['range']}")
        print(f"    source: {r['source']}")
    return 0


def cmd_run(args) -> int:
    from .labs.base import get_lab
    from .scenario import Switches, switch_spec

    lab = get_lab(args.lab)
    overrides = _kv(args.set, "--set")
    if args.nodes is not None:
        overrides["nodes"] = args.nodes
    if args.seed is not None:
        overrides["seed"] = args.seed
    switches = _kv(args.switch, "--switch")
    settings = list(lab.settings)
    other = {}
    for name, setting in switches.items():
        spec = switch_spec(name)
        if setting not in spec.settings:
            raise ParameterError(spec.name, f"must be one of {', '.join(spec.settings)}; got {setting!r}")
        if spec.name in lab.params:        # a lab that sets every switch (the capstone)
            overrides[spec.name] = setting
            continue
        if spec.name == lab.switch:
            settings = [setting]
        else:
            other[spec.name] = setting
    Switches(**other)  # validates
    for k in list(overrides):     # validate every override once, before any run
        lab.params[k].validate(overrides[k])
    for s in settings:            # refuse before running anything if one setting would not fit
        lab.check_memory(s, overrides)
    results = {}
    effective = {}
    for s in settings:
        res = lab.run(s, overrides)
        p = res.summary.pop("params", None) or lab.resolve(s, overrides)
        effective[s] = p
        results[s] = {k: _jsonable(v) for k, v in res.summary.items()}
    common = {}
    for k in effective[settings[0]]:
        vals = {s: effective[s][k] for s in settings}
        common[k] = vals[settings[0]] if len(set(map(repr, vals.values()))) == 1 else vals
    if other:
        common["switches"] = other
    card = None
    if hasattr(lab, "scorecard"):      # the capstone: every row of its scorecard
        card = lab.scorecard(overrides, progress=False)
    if args.format == "json":
        out = {"lab": lab.name, "scenario": common, "results": results}
        if card is not None:
            out["scorecard"] = [{"row": r, **{k: _jsonable(v) for k, v in row.items()}}
                                for r, row in card.to_dict("index").items()]
        print(json.dumps(out, indent=2, default=str))
        return 0
    metrics = [m for m in results[settings[0]] if not isinstance(results[settings[0]][m], (dict, list, tuple))]
    if args.format == "csv":
        w = csv.writer(sys.stdout)
        w.writerow(["metric"] + settings)
        for m in metrics:
            w.writerow([m] + [results[s][m] for s in settings])
        return 0
    from .claims import format_value

    width = max(len(m) for m in metrics) + 2
    print(f"lab {lab.name}: {lab.title}  ({common['nodes']:,} nodes, seed {common['seed']})")
    print(f"{'metric':<{width}}" + "".join(f"{s:>16}" for s in settings))
    for m in metrics:
        cells = "".join(f"{format_value(results[s][m]) if results[s][m] is not None else '-':>16}" for s in settings)
        print(f"{m:<{width}}{cells}")
    if card is not None:
        print()
        print(card[["slos_broken", "breaks", "first_break"]].to_string())
    return 0


def cmd_claims(args) -> int:
    from .claims import CSV_COLUMNS, claims_table, printable

    df = claims_table([args.lab] if args.lab else None, bands=not args.no_bands)
    if args.format == "csv":
        buf = io.StringIO()
        df[list(CSV_COLUMNS)].to_csv(buf, index=False)
        sys.stdout.write(buf.getvalue())
        return 0
    if args.format == "json":
        print(json.dumps([{k: _jsonable(v) for k, v in r.items()} for r in df.to_dict("records")], indent=2))
        return 0
    if df.empty:
        print("no claims")
        return 0
    print(printable(df).to_string(index=False))
    return 0


def _switch_settings(items, what="--switch") -> dict[str, list[str]]:
    """``--switch NAME=SETTING`` (repeatable, or ``NAME=S1,S2``) -> {switch: [settings]}, validated."""
    from .scenario import switch_spec

    out: dict[str, list[str]] = {}
    for item in items or []:
        if "=" not in item:
            raise ParameterError(what, f"must be NAME=SETTING; got {item!r}")
        name, value = (x.strip() for x in item.split("=", 1))
        spec = switch_spec(name)
        for setting in (v.strip() for v in value.split(",")):
            if setting not in spec.settings:
                raise ParameterError(spec.name, f"must be one of {', '.join(spec.settings)}; got {setting!r}")
            if setting in out.get(spec.name, []):
                raise ParameterError(spec.name, f"setting {setting!r} is given twice")
            out.setdefault(spec.name, []).append(setting)
    return out


def cmd_sweep(args) -> int:
    from .labs.base import get_lab
    from .sweeps import parse_grid, sweep

    lab = get_lab(args.lab)
    switches = _switch_settings(args.switch)
    for name in switches:
        if name != lab.switch:
            raise ParameterError(name, f"is not the switch of lab {lab.name} (it toggles {lab.switch!r}); "
                                       f"a sweep runs one lab")
    df = sweep(lab, parse_grid(args.grid), settings=switches.get(lab.switch), seeds=args.seeds or 1,
               base=_kv(args.set, "--set"), out=args.out, scheduler=args.scheduler, workers=args.workers)
    if args.out:
        print(f"wrote {len(df)} rows x {df.shape[1]} columns to {args.out}", file=sys.stderr)
    else:
        df.to_csv(sys.stdout, index=False)
    return 0


def cmd_report(args) -> int:
    from .reports import report

    switches = _switch_settings(args.switch)
    path = report(args.labs or None, overrides=_kv(args.set, "--set"), switches=switches, out=args.out)
    print(f"wrote {path}", file=sys.stderr)
    return 0


def cmd_cache(args) -> int:
    from . import cache

    d = cache.directory()
    if args.clear:
        print(f"removed {cache.clear()} stored result(s) from {d}")
        return 0
    files = list(d.glob("*.pickle")) if d.is_dir() else []
    size = sum(f.stat().st_size for f in files)
    print(f"{d}: {len(files)} stored result(s), {size / 2**20:.1f} MiB (budget {cache.BUDGET_BYTES / 2**20:.0f} MiB); "
          f"{'on' if cache.enabled() else 'off'} ({cache.SWITCH_VARIABLE}=0 turns it off)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="kscale-lab", description="How Kubernetes survives at 10,000 nodes: the labs.")
    sub = p.add_subparsers(dest="cmd", parser_class=_Parser)
    sub.add_parser("list", help="labs, their switches and settings")
    pp = sub.add_parser("params", help="every parameter of a lab")
    pp.add_argument("lab")
    pp.add_argument("--format", choices=("table", "csv", "json"), default="table")
    pr = sub.add_parser("run", help="run a lab for each setting of its switch")
    pr.add_argument("lab")
    pr.add_argument("--nodes", type=str)
    pr.add_argument("--seed", type=str)
    pr.add_argument("--set", action="append", metavar="NAME=VALUE")
    pr.add_argument("--switch", action="append", metavar="NAME=SETTING")
    pr.add_argument("--format", choices=("table", "csv", "json"), default="table")
    pc = sub.add_parser("claims", help="the article's figures beside the labs'")
    pc.add_argument("--lab")
    pc.add_argument("--format", choices=("table", "csv", "json"), default="table")
    pc.add_argument("--no-bands", action="store_true",
                    help="skip the band (each assumption at the ends of its plausible range); robust is then empty")
    ps = sub.add_parser("sweep", help="a lab over a grid of parameters, settings and seeds: one table")
    ps.add_argument("lab")
    ps.add_argument("--grid", action="append", metavar="NAME=V1,V2,...")
    ps.add_argument("--set", action="append", metavar="NAME=VALUE")
    ps.add_argument("--switch", action="append", metavar="NAME=SETTING")
    ps.add_argument("--seeds", metavar="N")
    ps.add_argument("--workers", metavar="N", help="local worker processes (default: the cores)")
    ps.add_argument("--out", metavar="FILE.csv|FILE.parquet", help="written as runs finish (default: CSV to stdout)")
    ps.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="run on an existing Dask cluster")
    pr2 = sub.add_parser("report", help="one static HTML file: every lab's figures, parameters and claims")
    pr2.add_argument("labs", nargs="*", metavar="LAB")
    pr2.add_argument("--set", action="append", metavar="NAME=VALUE")
    pr2.add_argument("--switch", action="append", metavar="NAME=SETTING")
    pr2.add_argument("--out", default="report.html", metavar="FILE.html")
    pk = sub.add_parser("cache", help="the stored results (capstone runs, claims values): where, how many; --clear removes them")
    pk.add_argument("--clear", action="store_true")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not args.cmd:
            parser.print_help()
            return 0
        return {"list": cmd_list, "params": cmd_params, "run": cmd_run, "claims": cmd_claims,
                "sweep": cmd_sweep, "report": cmd_report, "cache": cmd_cache}[args.cmd](args)
    except (KscaleError, ValueError) as e:
        print(f"kscale-lab: error: {e}", file=sys.stderr)
        return 2
    except MemoryError:
        print("kscale-lab: error: out of memory; reduce nodes, pods or objects", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `kscale-lab run ... | head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
