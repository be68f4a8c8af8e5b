"""
The admin commands: C{keygen}; and C{adduser}, C{passwd} and C{users},
which change a server's store in its data directory, directly
(the server may be running: SQLite in WAL mode lets both write).

They refuse a data directory that is missing or of another domain
(L{fmtp.datadir}), rather than fill a new empty store that no server
reads.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

from twisted.python import usage

from fmtp import datadir
from fmtp.accounts import (
    DEFAULT_SCRYPT_COST,
    check_new_password,
    hash_password,
    parse_scrypt_n,
)
from fmtp.cli.config import read_password
from fmtp.cli.options import CommandOptions, JSONOption
from fmtp.cli.output import print_json
from fmtp.cli.runner import run_on_reactor
from fmtp.cli.status import EXIT_OK, BadUsage, Refused
from fmtp.datadir import DEFAULT_DATA_DIR, STORE_OPEN_ERRORS, DataDirError, Found
from fmtp.errors import AccountExists, InvalidAddress
from fmtp.keys.keyfile import KeyFileError, load_private_key, write_private_key
from fmtp.keys.records import hosts_entry, zone_line
from fmtp.keys.signing import DomainSigner, generate_private_key
from fmtp.objects import domain_of, normalize_address, normalize_domain, user_object
from fmtp.store import MemoryStore, SQLiteStore, store_from_url


def parse_domain(text: str) -> str:
    try:
        return normalize_domain(text)
    except InvalidAddress as e:
        raise usage.UsageError(e.message)


def parse_address(text: str) -> str:
    try:
        return normalize_address(text)
    except InvalidAddress as e:
        raise usage.UsageError(e.message)


class KeygenOptions(CommandOptions):
    synopsis = "--domain DOMAIN [--key-file PATH] [--force] | --show [--hosts-entry]"
    longdesc = (
        "Make an Ed25519 domain key, write it with mode 0600, and print the TXT "
        "record to publish at fmtpkey.DOMAIN.  With --show, make nothing: print "
        "the record of the existing key file again (its domain is then the one "
        "its data directory records, unless --domain says otherwise).  With "
        "--hosts-entry, print only the line that names the key in a hosts file "
        "(twistd fmtp --hosts-file), for a private network without DNS."
    )
    examples = (
        "fmtp keygen --domain poe.net --key-file /var/lib/fmtp/domain.key",
        "fmtp keygen --show --key-file /var/lib/fmtp/domain.key",
        "fmtp keygen --show --hosts-entry --key-file poe.net/domain.key >> hosts",
    )
    optParameters = [
        ["domain", "d", None, "The domain the key signs for."],
        ["key-file", "k", datadir.key_path(DEFAULT_DATA_DIR), "The key file."],
    ]
    optFlags = [
        ["force", None, "Replace an existing key file."],
        ["show", None, "Print the record to publish for the existing key file."],
        [
            "hosts-entry",
            None,
            'Print only the hosts file line naming the key: key DOMAIN "RECORD".',
        ],
    ]

    def postOptions(self) -> None:
        if self["show"] and self["force"]:
            raise usage.UsageError("--show makes nothing: drop --force")
        if not self["domain"] and self["show"]:
            self["domain"] = _key_file_domain(self["key-file"])
        if not self["domain"]:
            raise usage.UsageError("--domain is required")
        self["domain"] = parse_domain(self["domain"])


def _key_file_domain(key_file: str) -> str | None:
    """
    The domain the data directory holding C{key_file} records, if any.
    """
    try:
        return datadir.read_domain(os.path.dirname(key_file) or ".")
    except (OSError, DataDirError):
        return None


class StoreOptions(CommandOptions):
    """
    The options of a command on a server's store: its data directory, and
    the store URL when the server has it elsewhere.
    """

    optParameters = [
        ["data-dir", None, DEFAULT_DATA_DIR, "The server's data directory."],
        ["store", None, None, "The store URL (default sqlite:DATA-DIR/fmtp.sqlite)."],
    ]

    def postOptions(self) -> None:
        self["store"] = self["store"] or datadir.store_url(self["data-dir"])
        try:
            store = store_from_url(self["store"])
        except ValueError as e:
            raise usage.UsageError(f"--store: {e}")
        if isinstance(store, MemoryStore):
            raise usage.UsageError(
                "--store memory: keeps nothing; name the server's store"
            )
        self["store-file"] = store.path if isinstance(store, SQLiteStore) else None
        self.setdefault("create-data-dir", False)


class AccountOptions(StoreOptions):
    optParameters = [
        [
            "password-file",
            None,
            None,
            "Read the password from this file's first line ('-' for standard "
            "input) instead of asking.",
        ],
        [
            "scrypt-n",
            None,
            str(DEFAULT_SCRYPT_COST.n),
            "scrypt's cost N for the hash (a power of two; the server's "
            "--scrypt-n re-hashes a weaker one at the first login).",
        ],
    ]

    def parseArgs(self, address: str) -> None:
        self["address"] = parse_address(address)

    def postOptions(self) -> None:
        super().postOptions()
        try:
            n = parse_scrypt_n(self["scrypt-n"])
        except ValueError as e:
            raise usage.UsageError(f"--scrypt-n {e}")
        self["password-cost"] = replace(DEFAULT_SCRYPT_COST, n=n)


class AddUserOptions(AccountOptions):
    synopsis = "[--data-dir DIR] [--create-data-dir] ADDRESS"
    longdesc = (
        "Create an account (and its user object) in a server's store.  The "
        "data directory must be the server's, and ADDRESS of its domain."
    )
    examples = (
        "fmtp adduser --data-dir /var/lib/fmtp edgar@poe.net",
        "fmtp adduser edgar@localhost --password-file - < password.txt",
    )
    optFlags = [
        [
            "create-data-dir",
            None,
            "Make the data directory for ADDRESS's domain if it does not exist "
            "(a server started on it must then have that --domain).",
        ]
    ]


class PasswdOptions(AccountOptions):
    synopsis = "[--data-dir DIR] ADDRESS"
    longdesc = "Set a new password for an account."
    examples = ("fmtp passwd --data-dir /var/lib/fmtp edgar@poe.net",)


def keygen(options: KeygenOptions) -> int:
    if options["show"]:
        return show_key(options)
    key = generate_private_key()
    try:
        write_private_key(options["key-file"], key, overwrite=options["force"])
    except FileExistsError:
        raise Refused(
            f"{options['key-file']} exists; use --force to replace it "
            "(and publish the new record before removing the old one)"
        )
    except OSError as e:
        raise Refused(f"cannot write {options['key-file']}: {e}")
    public = DomainSigner(key, options["domain"]).public_key()
    if options["hosts-entry"]:
        print(hosts_entry(options["domain"], public))
        return EXIT_OK
    print(f"Wrote {options['key-file']} (mode 0600). Publish this TXT record:")
    print(zone_line(options["domain"], public))
    return EXIT_OK


def show_key(options: KeygenOptions) -> int:
    """
    C{fmtp keygen --show}: the record to publish for an existing key.
    """
    try:
        key = load_private_key(options["key-file"])
    except (OSError, KeyFileError) as e:
        raise Refused(f"cannot read the key {options['key-file']}: {e}")
    public = DomainSigner(key, options["domain"]).public_key()
    if options["hosts-entry"]:
        print(hosts_entry(options["domain"], public))
        return EXIT_OK
    print(
        f"The key in {options['key-file']} (fingerprint {public.fingerprint}). "
        "Publish this TXT record:"
    )
    print(zone_line(options["domain"], public))
    return EXIT_OK


def check_data_dir(options: StoreOptions, domain: str) -> Found:
    """
    Refuse, before asking for a password, to change a store that no server
    of C{domain} reads: see L{fmtp.datadir}.

    @return: L{Found.CREATED} if the data directory is to be made.
    @raise Refused: saying why.
    """
    create = options["create-data-dir"]
    try:
        found = datadir.check_for_admin(options["data-dir"], domain, create)
    except DataDirError as e:
        raise Refused(str(e))
    store_file = options["store-file"]
    if store_file is not None and not store_file.exists() and not create:
        raise Refused(
            f"no store {store_file}: the server keeps it elsewhere? Give --store "
            "as the server has it"
        )
    return found


def data_dir_domain(options: StoreOptions) -> str:
    """
    The domain of the data directory the options name, for the commands
    that name no address (C{users}, C{queue}), checked as
    L{check_data_dir} checks it.

    @raise Refused: if it is missing or records no domain.
    """
    try:
        domain = datadir.domain_for_admin(options["data-dir"])
    except DataDirError as e:
        raise Refused(str(e))
    check_data_dir(options, domain)
    return domain


def make_data_dir(options: StoreOptions, domain: str) -> None:
    try:
        datadir.create(options["data-dir"], domain)
    except OSError as e:
        raise Refused(f"cannot make {options['data-dir']}: {e}")
    print(f"Made the data directory {options['data-dir']} for {domain}")


async def open_store(reactor: Any, options: StoreOptions):
    """
    The store the options name, opened; the caller closes it.
    """
    store = store_from_url(options["store"], reactor)
    try:
        await store.open()
    except STORE_OPEN_ERRORS as e:
        raise Refused(f"cannot open the store {options['store']}: {e}")
    return store


async def set_account(
    reactor: Any, options: AccountOptions, password: str, create: bool
) -> None:
    encoded = hash_password(password, cost=options["password-cost"])
    store = await open_store(reactor, options)
    try:
        address = options["address"]
        if create:
            if await store.get_room(address) is not None:
                # One namespace: a user and a room never share an address.
                raise Refused(f"{address} is a chat room's address")
            try:
                await store.add_account(address, encoded)
            except AccountExists:
                raise Refused(f"{address} already has an account")
            if await store.get_object(address) is None:
                await store.put_object(user_object(address))
            print(f"Created {address}")
        elif not await store.set_password_hash(address, encoded):
            raise Refused(f"no account {address}")
        else:
            print(f"Changed the password of {address}")
    finally:
        await store.close()


def account_command(name: str, options: AccountOptions) -> int:
    """
    C{fmtp adduser} and C{fmtp passwd}: the data directory is checked
    first, then the password asked, then the store changed.
    """
    domain = domain_of(options["address"])
    found = check_data_dir(options, domain)
    try:
        password = check_new_password(read_password(options["password-file"], True))
    except ValueError as e:
        raise BadUsage(str(e))
    if found is Found.CREATED:
        make_data_dir(options, domain)
    return run_on_reactor(
        lambda reactor: set_account(reactor, options, password, name == "adduser")
    )


class UsersOptions(JSONOption, StoreOptions):
    synopsis = "[--data-dir DIR] [--json] | delete ADDRESS"
    longdesc = (
        "List the accounts of a server's store, or delete one.  Deleting an "
        "account removes the account, its user object and every object it "
        "stored but did not send, empties its inbox and forgets the senders it "
        "approved, so the address can be given to someone new.  The messages it "
        "sent stay with their recipients (and in the queue, which still delivers "
        "them).  A session it has open on a running server lasts until it ends."
    )
    examples = (
        "fmtp users --data-dir /var/lib/fmtp",
        "fmtp users delete edgar@poe.net --data-dir /var/lib/fmtp",
    )

    def parseArgs(self, action: str | None = None, address: str | None = None) -> None:
        if action is None:
            self["delete"] = None
        elif action == "delete" and address is not None:
            self["delete"] = parse_address(address)
        else:
            raise usage.UsageError("expected no argument, or delete ADDRESS")


async def users(reactor: Any, options: UsersOptions) -> int:
    store = await open_store(reactor, options)
    try:
        address = options["delete"]
        if address is not None:
            if not await store.delete_account(address):
                raise Refused(f"no account {address}")
            print(
                f"Deleted {address}: its account, user object, unsent objects, "
                "inbox and approvals; what it sent stays with its recipients"
            )
            return EXIT_OK
        accounts = await store.list_accounts()
    finally:
        await store.close()
    if options["json"]:
        print_json({"users": [{"address": address} for address in accounts]})
    else:
        for address in accounts:
            print(address)
    return EXIT_OK


def users_command(options: UsersOptions) -> int:
    if options["delete"] is not None:
        check_data_dir(options, domain_of(options["delete"]))
    else:
        data_dir_domain(options)
    return run_on_reactor(lambda reactor: users(reactor, options))
