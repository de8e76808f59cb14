"""Convert SLM-Lab v5 specs to zoo's own YAML once: `python tools/convert_slm.py slm_spec.json [name ...] -o specs/`.

Each spec becomes `<out>/<name>.yaml`, the zoo spec `tools/train.py` builds from the SLM-Lab file itself (same
fields, so the same run for the same seed), headed by comments naming its source and every translation note.
`-s var=value` fills SLM-Lab `${var}` templates (e.g. `-s env=ALE/Pong-v5`). Exits 2 listing every field that does
not translate.
"""

import argparse
import sys
from pathlib import Path

import yaml

from zoo.slm import translate_file
from zoo.spec import SOURCE_PREFIX, SpecError, parse_override


def convert(path: Path, names: list[str], out_dir: Path, variables: dict) -> list[Path]:
    """Write one zoo YAML per spec; returns the files written."""
    written = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, (raw, notes) in translate_file(path, names, variables).items():
        notes = [*notes, *_drop_source_search(raw, path)]
        header = [f"# {name}: converted from SLM-Lab's {path.name} by tools/convert_slm.py"]
        if variables:
            header.append("# templates filled: " + ", ".join(f"{k}={v}" for k, v in variables.items()))
        header += ["# translation notes (SLM-Lab -> zoo):", *(f"#   {note}" for note in notes)]
        target = out_dir / f"{name}.yaml"
        target.write_text("\n".join(header) + "\n" + yaml.safe_dump(raw, sort_keys=False))
        written.append(target)
    return written


def _drop_source_search(raw: dict, path: Path) -> list[str]:
    """A search over an SLM-Lab field that maps to no single zoo field re-translates the SLM-Lab spec each trial,
    which a zoo file cannot: such keys are left out of the converted search, with a note."""
    search = raw.get("search", {})
    dropped = [key for key in search if key.startswith(SOURCE_PREFIX)]
    for key in dropped:
        del search[key]
    if dropped and not search:
        del raw["search"]
    return [f"search.{key}: left out (it searches SLM-Lab's own field; run tools/search.py on {path.name} to "
            "search it)" for key in dropped]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="convert_slm.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec_file", type=Path, help="SLM-Lab spec file (JSON or YAML)")
    parser.add_argument("names", nargs="*", help="spec names (default: every spec in the file)")
    parser.add_argument("-o", "--out", type=Path, default=Path("specs"), help="output folder (default: specs)")
    parser.add_argument("-s", "--set", action="append", default=[], metavar="VAR=VALUE",
                        help="fill an SLM-Lab ${var} template")
    args = parser.parse_args(argv)
    try:
        variables = dict(parse_override(text) for text in args.set)
        for target in convert(args.spec_file, args.names, args.out, variables):
            print(f"wrote {target}")
    except SpecError as err:
        for line in str(err).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
