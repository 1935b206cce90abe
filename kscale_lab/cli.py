"""kscale-lab: the labs on the command line.

    kscale-lab list                         labs, their switches and settings
    kscale-lab params LAB [--format json]   every parameter: unit, default, range, source
    kscale-lab run LAB [--nodes N] [--set NAME=VALUE ...] [--switch NAME=SETTING ...]
                       [--seed S] [--format table|csv|json]
    kscale-lab claims [--lab LAB] [--format table|csv|json]

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
    by_switch = {lab.switch: lab for lab in labs.values()}
    print(f"{'switch':<15} {'lab':<15} settings")
    for spec in SWITCH_SPECS:
        lab = by_switch.get(spec.name)
        print(f"{spec.name:<15} {(lab.name if lab else '(not yet)'):<15} {', '.join(spec.settings)}"
              f"   -- {spec.title} (article section {spec.article_section})")
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
    if args.format == "json":
        print(json.dumps({"lab": lab.name, "scenario": common, "results": results}, indent=2))
        return 0
    metrics = list(results[settings[0]])
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
    return 0


def cmd_claims(args) -> int:
    from .claims import CSV_COLUMNS, claims_table, format_value

    df = claims_table([args.lab] if args.lab else None)
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
    shown = df.assign(lab_value=df["lab_value"].map(format_value), holds=df["holds"].map(format_value))
    print(shown[list(CSV_COLUMNS) + ["description"]].to_string(index=False))
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
    return p


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not args.cmd:
            parser.print_help()
            return 0
        return {"list": cmd_list, "params": cmd_params, "run": cmd_run, "claims": cmd_claims}[args.cmd](args)
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
