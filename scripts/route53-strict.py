#!/usr/bin/env python3
"""moto's Route 53, made as strict as the real one where our correctness depends on it.

moto (PyPI) serves the Route 53 REST API faithfully in shape (XML, paging, GetChange), but it
accepts change batches that Route 53 refuses. This starts moto's server on loopback after
wrapping Route53Backend.change_resource_record_sets with a check of the whole batch against the
zone as it is now, the way Route 53 documents ChangeResourceRecordSets:

  - DELETE must name an existing record set with exactly its TTL and values (moto checks its
    journal of past changes instead, so a stale DELETE passes);
  - CREATE of a name and type that exists fails (moto adds a second record set);
  - each TXT character-string is at most 255 bytes, quotes balanced (CharacterStringTooLong);
  - every name lies in the zone;
  - the batch is validated whole before anything is applied, so it applies all or nothing
    (moto can apply the first changes and then fail);
  - an exact DELETE of the set as it is now is accepted (moto compares with its journal of past
    changes, and can refuse it when the set was stored in another form).

A refused batch answers 400 InvalidChangeBatch with Route 53's message. `--plain` starts moto
unchanged, for the test that shows why the strictness matters.

Usage: route53-strict.py --port PORT [--zone example.test] [--plain]
"""

import argparse
import sys
import threading

from moto.route53 import models
from moto.route53.exceptions import Route53ClientError
from moto.server import ThreadedMotoServer


def norm(name):
    name = name.lower()
    return name if name.endswith(".") else name + "."


def txt_strings(value):
    """The character-strings of one TXT value in presentation form, or raise."""
    out, i, n = [], 0, len(value)
    while i < n:
        if value[i] == " ":
            i += 1
            continue
        if value[i] != '"':
            raise ValueError("InvalidCharacterString (Value should be enclosed in quotation marks)")
        i += 1
        s = bytearray()
        while i < n and value[i] != '"':
            if value[i] == "\\" and i + 1 < n:
                i += 1
            s += value[i].encode()
            i += 1
        if i >= n:
            raise ValueError("InvalidCharacterString (unbalanced quotation marks)")
        i += 1
        if len(s) > 255:
            raise ValueError("CharacterStringTooLong (Value is too long)")
        out.append(bytes(s))
    return out


def refuse(message):
    raise Route53ClientError("InvalidChangeBatch", message)


def strict():
    def change_resource_record_sets(self, zoneid, change_list):
        zone = self.get_hosted_zone(zoneid)
        state = {}
        for rrset in zone.rrsets:
            if rrset.set_identifier is None:
                state[(norm(rrset.name), rrset.type)] = (str(rrset.ttl), sorted(rrset.records))
        for change in change_list:
            rs = change["ResourceRecordSet"]
            name, rtype = norm(rs["Name"]), rs["Type"]
            key = (name, rtype)
            values = [r["Value"] for r in rs.get("ResourceRecords", [])]
            ttl = str(rs.get("TTL"))
            if not name.endswith("." + norm(zone.name)) and name != norm(zone.name):
                refuse(f"RRSet with DNS name {name} is not permitted in zone {zone.name}")
            if rtype == "TXT":
                for v in values:
                    try:
                        txt_strings(v)
                    except ValueError as e:
                        refuse(f"[Invalid Resource Record: 'FATAL problem: {e} encountered with '{v}'']")
            action = change["Action"]
            if action == "CREATE":
                if key in state:
                    refuse(f"[Tried to create resource record set [name='{name}', type='{rtype}'] but it already exists]")
                state[key] = (ttl, sorted(values))
            elif action == "DELETE":
                if state.get(key) != (ttl, sorted(values)):
                    refuse(f"[Tried to delete resource record set [name='{name}', type='{rtype}'] but the values provided do not match the current values]")
                del state[key]
            elif action == "UPSERT":
                state[key] = (ttl, sorted(values))
            else:
                refuse(f"Invalid action {action}")
        # Valid as a whole: apply it, change by change, against the zone as it is (moto's own
        # method checks DELETE and CREATE against its journal of past changes instead, and
        # refuses an exact DELETE of a set it stored in another form).
        for change in change_list:
            rs = dict(change["ResourceRecordSet"])
            rs["Name"] = norm(rs["Name"])
            if "ResourceRecords" in rs:
                rs["ResourceRecords"] = [r["Value"] for r in rs["ResourceRecords"]]
            if change["Action"] == "CREATE":
                zone.add_rrset(rs)
            elif change["Action"] == "UPSERT":
                zone.upsert_rrset(rs)
            else:
                zone.delete_rrset(rs)
        return None

    return change_resource_record_sets


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--zone", action="append", default=[])
    parser.add_argument("--plain", action="store_true")
    args = parser.parse_args()
    if not args.plain:
        backend = models.Route53Backend
        backend.change_resource_record_sets = strict()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    server.start()
    if args.zone:
        import boto3

        client = boto3.client(
            "route53",
            endpoint_url=f"http://127.0.0.1:{args.port}",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        for i, zone in enumerate(args.zone):
            client.create_hosted_zone(Name=zone, CallerReference=f"mailsec-{i}")
    print(f"route53 ({'plain moto' if args.plain else 'strict'}) on 127.0.0.1:{args.port}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    sys.exit(main())
