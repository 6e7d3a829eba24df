"""`threatroute data build|fetch-asn|fetch-geo`: enrichment data files."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from threatroute.streams.commands.base import DONE, actions, command
from threatroute.streams.config import Config


def build(args: argparse.Namespace, config: Config) -> int:
    from threatroute.enrichers import databuild

    for path in databuild.build_demo_data(args.dest):
        print(f"wrote {path}")
    return DONE


def fetch_asn(args: argparse.Namespace, config: Config) -> int:
    from threatroute.enrichers import databuild

    print(databuild.fetch_asn_data(args.dest))
    return DONE


def fetch_geo(args: argparse.Namespace, config: Config) -> int:
    from threatroute.enrichers import databuild

    # a secret never on the command line (argv is visible to every local user): a file or env
    key = (Path(args.maxmind_key_file).read_text().strip() if args.maxmind_key_file
           else os.environ.get("MAXMIND_LICENSE_KEY"))
    print(databuild.fetch_geo_data(args.dest, account_id=args.maxmind_account, licence_key=key))
    return DONE


def _dest(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dest", type=Path, default=Path(".threatroute/data"),
                        help="folder to write into (default .threatroute/data)")


def register(subparsers: Any) -> None:
    parser = command(subparsers, "data",
                     help="enrichment data: build the demo set, or fetch real data",
                     description="Enrichment data files (docs/data.md): a small demo set built "
                                 "offline, or the real ASN and geolocation databases.")
    sub = actions(parser)
    _dest(command(sub, "build", help="demo ASN and geo databases, offline", handler=build))
    _dest(command(sub, "fetch-asn", help="the latest RouteViews table via pyasn (internet)",
                  handler=fetch_asn))
    p = command(sub, "fetch-geo", help="a City database: MaxMind GeoLite2 with an account, "
                                       "else DB-IP lite (internet)", handler=fetch_geo)
    _dest(p)
    p.add_argument("--maxmind-account", help="MaxMind account id")
    p.add_argument("--maxmind-key-file", metavar="FILE",
                   help="file holding the MaxMind licence key (or set MAXMIND_LICENSE_KEY); "
                        "never the key itself on the command line")
