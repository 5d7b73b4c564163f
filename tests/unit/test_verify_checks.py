"""verify's checks, read from console lines as the probe prints them."""

from factory.verify import MARK, Guest, evaluate, guest_info

INFO = guest_info("mariadb", "10.5")


def console(**lines: str) -> str:
    base = {
        "nic": "ens3 10.0.2.15/24",
        "localhost": "127.0.0.1       localhost",
        "datastore": "mariadb mariadb.service active",
        "dbquery": "mariadb 42",
    }
    base.update(lines)
    return "\n".join(f"{MARK} {k} {v}" for k, v in base.items())


def by_name(text: str) -> dict:
    return {c.name: c for c in evaluate(text, INFO, Guest("mariadb"))}


def test_a_nic_without_an_address_fails():
    assert by_name(console())["NIC has an address from DHCP"].passed
    assert not by_name(console(nic=""))["NIC has an address from DHCP"].passed


def test_localhost_must_resolve():
    assert by_name(console())["localhost resolves"].passed
    assert not by_name(console(localhost=""))["localhost resolves"].passed


def test_the_database_itself_must_answer():
    assert by_name(console())["database answers select 40+2 in the guest"].passed
    failed = by_name(console(dbquery="mariadb ERROR 2002 (HY000): Can't connect to local server"))
    assert not failed["database answers select 40+2 in the guest"].passed
    # a wrapper unit being active is a separate check, and passes on its own
    assert failed["datastore service active"].passed
