"""python -m ckptio: the tools over the package.
  python -m ckptio inspect PATH [--allow-global MODULE.NAME]... [--stub-unknown]
  python -m ckptio validate PATH [--format F] [--json] [--allow-global MODULE.NAME]... [--stub-unknown]
  python -m ckptio convert SRC DST [--to F] [--dtype T] [--include P]... [--exclude P]... [--rename OLD=NEW]...
                           [--allow-global MODULE.NAME]... [--stub-unknown] [--skip-unsupported] [--strict] [--force]
  python -m ckptio diff A B [--atol X] [--rtol X] [--allow-global MODULE.NAME]... [--stub-unknown]
Exit status: 0 ok (valid, equal), 1 invalid or different, 2 usage or error."""
import argparse
import json
import sys

import ckptio


def add_policy(command: argparse.ArgumentParser) -> None:
    command.add_argument("--allow-global", action="append", default=[], metavar="MODULE.NAME",
                         help="keep objects of this class of a pickle as inert stubs")
    command.add_argument("--stub-unknown", action="store_true", help="keep every unknown class's objects as stubs")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ckptio", description="Checkpoint tools (ckptio).")
    commands = parser.add_subparsers(dest="command", required=True)
    inspect = commands.add_parser("inspect", help="list the tensors")
    inspect.add_argument("path")
    add_policy(inspect)
    validate = commands.add_parser("validate", help="check every rule of the format")
    validate.add_argument("path")
    validate.add_argument("--format", help="check by this format's rules (default: detected from the content)")
    validate.add_argument("--json", action="store_true", help="print the report as JSON")
    add_policy(validate)
    convert = commands.add_parser("convert", help="convert between formats")
    convert.add_argument("source")
    convert.add_argument("destination")
    convert.add_argument("--to")
    convert.add_argument("--dtype")
    convert.add_argument("--include", action="append", default=[])
    convert.add_argument("--exclude", action="append", default=[])
    convert.add_argument("--rename", action="append", default=[])
    add_policy(convert)
    convert.add_argument("--skip-unsupported", action="store_true",
                         help="leave out members of types ckpt cannot represent (with a warning)")
    convert.add_argument("--strict", action="store_true",
                         help="refuse to drop a pickle's non-tensor data in a flat destination")
    convert.add_argument("--force", action="store_true")
    diff = commands.add_parser("diff", help="compare two checkpoints tensor by tensor")
    diff.add_argument("a")
    diff.add_argument("b")
    diff.add_argument("--atol", type=float, default=0.0)
    diff.add_argument("--rtol", type=float, default=0.0)
    add_policy(diff)
    args = parser.parse_args(argv)
    try:
        if args.command == "inspect":
            with ckptio.open(args.path, allow_global=args.allow_global, stub_unknown=args.stub_unknown) as ckpt:
                print(f"{args.path}: {ckpt.format}, {len(ckpt)} tensors")
                for name in ckpt:
                    tensor = ckpt.get_slice(name)
                    print(f"{name} {tensor.dtype} {list(tensor.shape)}")
            return 0
        if args.command == "validate":
            report = ckptio.validate(args.path, args.format, allow_global=args.allow_global,
                                     stub_unknown=args.stub_unknown)
            if args.json:
                print(json.dumps(report, indent=2))
            else:
                for issue in report["issues"]:
                    where = f" [{issue['variable']}]" if issue["variable"] else ""
                    print(f"{issue['severity']} {issue['code']} {issue['name']}{where}: {issue['message']}")
                print("valid" if report["valid"] else "INVALID")
            # ckpt-validate's policy: an I/O or usage error (the E1xx family) is 2.
            if any(i["severity"] == "error" and i["code"].startswith("E1") for i in report["issues"]):
                return 2
            return 0 if report["valid"] else 1
        if args.command == "convert":
            done = ckptio.convert(args.source, args.destination, to=args.to, dtype=args.dtype, include=args.include,
                                  exclude=args.exclude, rename=args.rename, allow_global=args.allow_global,
                                  stub_unknown=args.stub_unknown, skip_unsupported=args.skip_unsupported,
                                  strict=args.strict, force=args.force)
            print(f"{args.destination}: {done['variables']} tensors, {done['bytes']} bytes")
            return 0
        result = ckptio.diff(args.a, args.b, atol=args.atol, rtol=args.rtol, allow_global=args.allow_global,
                             stub_unknown=args.stub_unknown)
        for name in result["only_in_a"]:
            print(f"only in {args.a}: {name}")
        for name in result["only_in_b"]:
            print(f"only in {args.b}: {name}")
        for name, reason in result["changed"].items():
            print(f"{name}: {reason}")
        print("equal" if result["equal"] else "different")
        return 0 if result["equal"] else 1
    except ckptio.CkptError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
